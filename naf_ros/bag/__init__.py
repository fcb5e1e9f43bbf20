"""Experience as rosbag2 (MCAP): record it, read it back, warm-start or train offline from it.

Hours on a real arm are expensive; every transition should outlive the process that produced
it. The bag code lives here, in one place, and the rest of the package reaches it only from
the top: the CLI and the ROS nodes build recorders and fill replay buffers, while the
in-process trainer (``naf_ros.core``) knows neither this package nor rosbag2.

- :mod:`naf_ros.bag.format`: topics, message types, metadata keys, :class:`BagError`;
- :mod:`naf_ros.bag.writer`: :class:`~naf_ros.bag.writer.BagRecorder`, one bag;
- :mod:`naf_ros.bag.segments`: :class:`~naf_ros.bag.segments.SegmentedBag`, numbered
  segments for long-running nodes (a crash loses at most the open one);
- :mod:`naf_ros.bag.reader`: validated reading, replay-buffer warm starts;
- :mod:`naf_ros.bag.offline`: ``naf-ros train-offline``.
"""
