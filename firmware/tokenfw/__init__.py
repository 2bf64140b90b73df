"""Token firmware: pure logic modules that run on MicroPython (ESP32, unix port) and CPython."""
VERSION = "0.1.0"
