"""The policy node (console script ``naf_policy``), split by job: :mod:`.node` (lifecycle and
wiring), :mod:`.parameters`, :mod:`.episodes`, :mod:`.reflex`, :mod:`.transitions`,
:mod:`.estop`, :mod:`.homing` and :mod:`.state_file`."""
