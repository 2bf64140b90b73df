# Small helpers for firmware tests that must run on MicroPython and CPython alike.
import os


def raises(exc_type, fn, *args, **kwargs):
    """Assert that fn(*args) raises exc_type; returns the exception."""
    try:
        fn(*args, **kwargs)
    except exc_type as error:
        return error
    raise AssertionError("%s not raised by %s" % (exc_type.__name__, fn))


def scratch_dir(prefix="t"):
    """A fresh, empty directory under /tmp (no tempfile module on MicroPython)."""
    name = "/tmp/%s-%s" % (prefix, "".join("%02x" % b for b in os.urandom(6)))
    os.mkdir(name)
    return name


def remove_tree(path):
    for entry in os.listdir(path):
        full = path + "/" + entry
        try:
            os.listdir(full)
        except OSError:
            os.remove(full)
            continue
        remove_tree(full)
    os.rmdir(path)
