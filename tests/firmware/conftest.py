# The modules in mp/ are MicroPython-compatible test code run by test_firmware_units.py on both
# interpreters; pytest must not collect them a third time on its own.
collect_ignore_glob = ["mp/*"]
