# Small JSON documents on flash (identity, role, calibration, cursors), written atomically.
#
# littlefs makes a rename atomic: a power cut during save() leaves either the old document or
# the new one, never a torn mix. A leftover temporary file from a cut is ignored and replaced.
import json
import os


def load(path, default=None):
    """The document at `path`, or `default` when it is missing or unreadable (a torn or
    corrupted file must not stop the token from booting; the caller logs what it got)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def save(path, document):
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump(document, f)
    os.rename(temporary, path)  # replaces `path` in one step on littlefs and POSIX
