"""``python -m naf_ros.bench SUITE ...``: the same as ``naf-ros bench SUITE ...``."""

import sys

from naf_ros.bench.main import main

sys.exit(main())
