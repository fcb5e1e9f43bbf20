"""Helpers shared by the tests: DDS processes and probes (ros), fault set-up (faults)."""
