# The flash log against a model: random sequences of append, commit, read, ack, wipe and power
# cycles (a reboot without commit) must always read back exactly what the model says.
import random

from test_store import Flash, encounter
from tokenfw import records
from tokenfw.store import Store


class Model:
    def __init__(self):
        self.committed = []  # (seq, n) in order
        self.buffered = []
        self.acked = 0
        self.next_seq = 1

    def last_committed(self):
        return self.committed[-1][0] if self.committed else self.next_seq - len(self.buffered) - 1


def check(store, model):
    assert store.next_seq == model.next_seq, (store.next_seq, model.next_seq)
    assert store.acked_seq == model.acked
    pending = sum(1 for seq, _ in model.committed if seq > model.acked)
    assert store.pending() == pending, (store.pending(), pending)
    oldest = model.committed[0][0] if model.committed else model.next_seq - len(model.buffered)
    assert store.oldest_seq == oldest, (store.oldest_seq, oldest)


def run(seed, steps):
    rng = random.Random(seed) if hasattr(random, "Random") else None
    if rng is None:
        random.seed(seed)
        rng = random
    flash = Flash(blocks=128)
    try:
        open_store = lambda: Store(flash.path("log"), batch_records=6, segment_records=16)
        store = open_store()
        model = Model()
        floor = 1  # every seq below was committed at some point (or burned)
        n = 0
        for step in range(steps):
            op = rng.getrandbits(4)
            if op < 7:
                seq = store.append(encounter(n))
                assert seq == model.next_seq, (step, seq, model.next_seq)
                model.buffered.append((seq, n))
                model.next_seq += 1
                n += 1
                if len(model.buffered) == 7:  # the 7th append committed the batch of 6 first
                    model.committed.extend(model.buffered[:6])
                    model.buffered = model.buffered[6:]
            elif op < 9:
                store.commit()
                model.committed.extend(model.buffered)
                model.buffered = []
            elif op < 11:
                flash.power_cycle()  # a reboot: the RAM batch is lost
                store = open_store()
                model.next_seq -= len(model.buffered)
                model.buffered = []
            elif op < 13:
                target = rng.getrandbits(9)
                got = store.ack(target)
                model.acked = max(model.acked, min(target, model.next_seq - len(model.buffered) - 1))
                assert got == model.acked, (step, got, model.acked)
            elif op < 15:
                start = rng.getrandbits(9)
                limit = rng.getrandbits(4) or None
                want = [(seq, k) for seq, k in model.committed if seq >= start]
                if limit is not None:
                    want = want[:limit]
                got = [(seq, records.decode(seq, buf)) for seq, buf in store.read(start, limit)]
                assert [seq for seq, _ in got] == [seq for seq, _ in want], (step, start, limit)
                assert [enc for _, enc in got] == [encounter(k) for _, k in want]
            else:
                store.wipe()
                model.next_seq -= len(model.buffered)
                model.buffered = []
                model.committed = []
                model.acked = model.next_seq - 1
            check(store, model)
            assert model.next_seq >= floor
            floor = model.next_seq - len(model.buffered)
    finally:
        flash.close()


def test_random_operations_match_the_model_seed_1():
    run(1, 300)


def test_random_operations_match_the_model_seed_2():
    run(2, 300)
