"""The digest candidates side by side: SHA-256, BLAKE2b, BLAKE3 and XXH3-128 on tensor bytes.

Each is timed on a contiguous float32 tensor's bytes, read in place, from 1 KiB to 64 MiB
(median of five repeats); the figure is GB/s. BLAKE3 is measured only when the ``blake3``
package is installed (it is not a dependency).

    python benchmarks/hashes.py
    python benchmarks/hashes.py --quick    # CI smoke run: up to 4 MiB
"""

import argparse
import ctypes
import hashlib
import statistics
import time

import torch
import xxhash


def candidates():
    found = {
        "sha256": lambda data: hashlib.sha256(data).digest(),
        "blake2b-128": lambda data: hashlib.blake2b(data, digest_size=16).digest(),
        "xxh3-128": xxhash.xxh3_128_digest,
    }
    try:
        import blake3
    except ImportError:
        print("blake3 is not installed: its column is skipped")
    else:
        found["blake3"] = lambda data: blake3.blake3(memoryview(data).cast("B")).digest(16)
    return found


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a short run for CI: sizes up to 4 MiB")
    options = parser.parse_args()
    sizes = [1 << 10, 1 << 14, 1 << 18, 1 << 22] + ([] if options.quick else [1 << 26])
    hashes = candidates()
    print(f"{'size':>8s} " + " ".join(f"{name:>12s}" for name in hashes) + "   (GB/s, median of 5)")
    for size in sizes:
        tensor = torch.randn(size // 4)
        data = (ctypes.c_char * size).from_address(tensor.data_ptr())
        calls = max(3, (1 << 26) // size)
        speeds = []
        for digest in hashes.values():
            times = []
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(calls):
                    digest(data)
                times.append((time.perf_counter() - start) / calls)
            speeds.append(size / statistics.median(times) / 1e9)
        label = f"{size >> 10} KiB" if size < 1 << 20 else f"{size >> 20} MiB"
        print(f"{label:>8s} " + " ".join(f"{speed:12.2f}" for speed in speeds))


if __name__ == "__main__":
    main()
