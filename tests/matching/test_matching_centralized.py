"""Centralized resolution: a case's own log mapped to the escrowed tokens that sent each RPI."""
import pytest

from matching_service.matching import resolve_escrowed
from matching_service.matching.engine import REASON_TIME, REASON_TX
from matching_scenario import DAY0, Emitter, Log

REGISTRY = [Emitter("TT-%05d" % i, tx_power_dbm=-10 - i % 5) for i in range(300)]
DEVICES = [e.device() for e in REGISTRY]


def test_each_heard_identifier_is_mapped_to_the_token_that_sent_it():
    case = Log("TT-CASE")
    case.hear(REGISTRY[5], DAY0 - 3 * 86400 + 30000, DAY0 - 3 * 86400 + 31200, rssi=-60)
    case.hear(REGISTRY[17], DAY0 + 50000, DAY0 + 50300, rssi=-80)
    case.hear(REGISTRY[250], DAY0 + 86399 - 120, DAY0 + 86399 + 120, rssi=-70)  # over midnight
    phone = Emitter("phone", escrowed=False)
    case.hear(phone, DAY0 + 40000, DAY0 + 40600)
    result = resolve_escrowed(case.sightings, DEVICES)
    assert result.rejections == []
    by_sender = {}
    for m in result.matches:
        by_sender.setdefault(m.sender, []).append(m)
    assert sorted(by_sender) == ["TT-00005", "TT-00017", "TT-00250"]
    assert min(m.first_seen for m in by_sender["TT-00005"]) == DAY0 - 3 * 86400 + 30000
    assert max(m.last_seen for m in by_sender["TT-00005"]) == DAY0 - 3 * 86400 + 31200
    assert {m.tx_power_dbm for m in by_sender["TT-00017"]} == {-12}
    assert {m.attenuation_db for m in by_sender["TT-00017"]} == {68}
    assert len(by_sender["TT-00250"]) == 2    # one RPI per side of midnight, two day keys
    assert {m.observer for m in result.matches} == {"TT-CASE"}
    heard_phone = {s.seq for s in case.sightings if s.first_seen >= DAY0 + 40000
                   and s.first_seen <= DAY0 + 40600}
    assert not heard_phone & {m.seq for m in result.matches}


@pytest.mark.parametrize("clock_error_s, resolved", [(90 * 60, True), (-90 * 60, True),
                                                     (3 * 3600, False)])
def test_sender_clock_error_within_tolerance_is_resolved(clock_error_s, resolved):
    skewed = Emitter("TT-00042", clock_error_s=clock_error_s)
    case = Log("TT-CASE").hear(skewed, DAY0 + 3600, DAY0 + 3600)
    result = resolve_escrowed(case.sightings, DEVICES)
    assert [m.sender for m in result.matches] == (["TT-00042"] if resolved else [])


def test_replayed_identifier_is_rejected_outside_its_time():
    case = Log("TT-CASE").hear(REGISTRY[9], DAY0 + 3600, DAY0 + 3600)
    s = case.sightings[0]
    case.add(s.rpi, s.aem, s.first_seen + 6 * 3600, 0, 1, -60, -60)   # same RPI, 6 h later
    result = resolve_escrowed(case.sightings, DEVICES)
    assert [(m.seq, m.sender) for m in result.matches] == [(0, "TT-00009")]
    assert [(r.seq, r.sender, r.reason) for r in result.rejections] == \
        [(1, "TT-00009", REASON_TIME)]


def test_escrowed_token_advertising_implausible_tx_power_is_not_trusted():
    loud = Emitter("TT-LOUD", tx_power_dbm=60)
    case = Log("TT-CASE").hear(loud, DAY0 + 3600, DAY0 + 3660)
    result = resolve_escrowed(case.sightings, DEVICES + [loud.device()])
    assert result.matches == [] and [r.reason for r in result.rejections] == [REASON_TX]


def test_seed_of_wrong_size_is_refused():
    from dataclasses import replace
    case = Log("TT-CASE").hear(REGISTRY[1], DAY0, DAY0)
    with pytest.raises(ValueError, match="TT-00001 has a seed of 8 bytes"):
        resolve_escrowed(case.sightings, [replace(DEVICES[1], seed=bytes(8))])


def test_two_worker_processes_find_the_same_senders():
    from matching_service.matching import EscrowedDevice
    from matching_scenario import seed_of
    many = [EscrowedDevice("TT-B%05d" % i, seed_of("TT-B%05d" % i)) for i in range(9000)]
    picked = [Emitter(many[i].serial) for i in (0, 4095, 4096, 8999)]
    case = Log("TT-CASE")
    for n, e in enumerate(picked):
        case.hear(e, DAY0 + 1000 * n, DAY0 + 1000 * n + 120)
    one = resolve_escrowed(case.sightings, many, workers=1)
    two = resolve_escrowed(case.sightings, many, workers=2)
    assert sorted({m.sender for m in one.matches}) == sorted(e.serial for e in picked)
    assert one == two


def test_sightings_spanning_months_are_refused_instead_of_scanning_for_minutes():
    case = Log("TT-CASE")
    for day in range(0, 70 * 86400, 86400):
        case.hear(REGISTRY[3], DAY0 - day, DAY0 - day)
    with pytest.raises(ValueError, match=r"span 7\d days; resolve at most 60"):
        resolve_escrowed(case.sightings, DEVICES)


def test_record_dated_before_1970_by_a_broken_correction_is_simply_not_resolved():
    case = Log("TT-CASE").hear(REGISTRY[3], DAY0, DAY0)
    case.add(bytes(16), bytes(4), -10 * 86400, 0, 1, -60, -60)
    result = resolve_escrowed(case.sightings, DEVICES)
    assert [m.seq for m in result.matches] == [0]
