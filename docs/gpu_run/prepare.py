"""Generate the Market-size synthetic set and decode it into the benchmark's cache, once."""
import importlib.util
import sys
from pathlib import Path

if __name__ == "__main__":
    spec = importlib.util.spec_from_file_location("tt", "benchmarks/train_throughput.py")
    tt = importlib.util.module_from_spec(spec)
    sys.modules["tt"] = tt
    spec.loader.exec_module(tt)
    options = tt.BenchmarkOptions(
        preset="market", workers=16, cache_dir=Path("/tmp/cache"), progress=False
    )
    data = tt.prepare_data(options, Path("/tmp/market"), tt.thesis_profile((256, 128)))
    print(f"generation {data.generation_seconds:.1f} s, decode {data.decode_seconds:.1f} s, "
          f"{data.counts()}")
