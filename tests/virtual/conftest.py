import sys
from pathlib import Path

# tests/virtual_token.py is shared by several test folders.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
