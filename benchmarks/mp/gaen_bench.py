# Times GAEN identifier derivation on MicroPython against the raw AES block it is built on
# (the baseline measured in the same run). Prints one JSON line.
#
# usage: micropython gaen_bench.py ITERATIONS
import json
import sys
import time

from tokenfw import aes, gaen

iterations = int(sys.argv[1])
tek = bytes(range(16))
enin = 2642976


def timed_ms(fn):
    began = time.ticks_us()
    for i in range(iterations):
        fn(i)
    return time.ticks_diff(time.ticks_us(), began) / 1000 / iterations


rpik = gaen.rpi_key(tek)
aemk = gaen.aem_key(tek)
cipher = aes.Cipher(rpik)
block = gaen.padded_data(enin)
metadata = gaen.metadata(-8)
results = {
    "aes_block_ms": timed_ms(lambda i: aes.encrypt_block(rpik, block)),
    "rpi_ms": timed_ms(lambda i: gaen.rpi(rpik, enin + i)),
    "rpi_cached_cipher_ms": timed_ms(lambda i: gaen.rpi(cipher, enin + i)),
    "aem_ms": timed_ms(lambda i: gaen.aem(aemk, block, metadata)),
    "tek_to_keys_ms": timed_ms(lambda i: (gaen.rpi_key(tek), gaen.aem_key(tek))),
}
results["rpi_over_aes_block"] = results["rpi_ms"] / results["aes_block_ms"]
print(json.dumps(results))
