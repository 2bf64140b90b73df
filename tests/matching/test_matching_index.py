"""The bulk RPI join finds exactly the pairs a plain dict join finds, duplicates included."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from matching_service.matching import Sighting, SightingIndex

# A small alphabet of RPIs so that duplicates and shared 8-byte prefixes actually occur.
PREFIXES = [bytes([p]) * 8 for p in range(4)]
rpis = st.builds(lambda p, tail: PREFIXES[p] + tail, st.integers(0, 3),
                 st.sampled_from([bytes(8), b"\x01" * 8, b"\x02" * 8]))


@settings(max_examples=150, deadline=None)
@given(heard=st.lists(rpis, max_size=30), wanted=st.lists(rpis, max_size=30))
def test_find_equals_a_dict_join_on_the_first_8_bytes(heard, wanted):
    index = SightingIndex(Sighting("TT-X", i, r, bytes(4), 0, 0, 1, -60, -60)
                          for i, r in enumerate(heard))
    cand_hi = np.frombuffer(b"".join(wanted), dtype="<u8")[0::2] if wanted else \
        np.zeros(0, dtype="<u8")
    cand, found = index.find(cand_hi)
    got = sorted(zip(cand.tolist(), found.tolist()))
    expected = sorted((c, s) for c, w in enumerate(wanted) for s, h in enumerate(heard)
                      if w[:8] == h[:8])
    assert got == expected
