"""ament_python packaging: console scripts per node, launch/config installed under share/."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "naf_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={"naf_ros.envs": ["assets/*.xml", "assets/*.urdf"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools", "numpy", "pyyaml"],
    zip_safe=True,
    maintainer="naf_ros maintainers",
    maintainer_email="maintainers@naf-ros.dev",
    description="NAF with imagination rollouts and iLQG exploration as a ROS 2 node graph",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "naf-ros = naf_ros.cli:main",
            "sim_bridge = naf_ros.ros.sim_bridge:main",
            "naf_policy = naf_ros.ros.policy.node:main",
            "dynamics_fitter = naf_ros.ros.dynamics_fitter:main",
            "ilqg_explorer = naf_ros.ros.ilqg_explorer:main",
            "learner = naf_ros.ros.learner:main",
            "bag_recorder = naf_ros.ros.bag_recorder:main",
            "description_publisher = naf_ros.ros.description_publisher:main",
        ],
    },
)
