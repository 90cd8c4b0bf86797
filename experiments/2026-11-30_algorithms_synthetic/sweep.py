"""Nine RLVR methods on the synthetic task: the default job's SFT and budget.

  python -m mathrl.sweep experiments/2026-11-30_algorithms_synthetic/sweep.py \
      --root /tmp/algorithms_synthetic [--processes 2]
  python -m mathrl.plot /tmp/algorithms_synthetic/* --out curves.png \
      --table table.md

Each method runs its recipe (configs/NAME.py: the paper's own
hyperparameters) on the default job (configs/default.py: one-digit
arithmetic, SFT to 50% validation accuracy, 400 RL steps of 16 prompts x 8
samples at temperature 0.7, evaluation every 100 steps), for seeds 0, 1, 2.
A seed's SFT stage is deterministic, so every method of that seed starts
from the same SFT policy. RL evaluations score the validation split (for
choosing) and the test split (for the record); compare methods on
validation, and report test.

`recipe_on_base` takes from the default job every field it changes that
the recipe leaves alone; where both set a field the recipe wins (DAPO's
dynamic sampling, MC-GRPO's 9 samples per prompt, GRPO's KL term).
"""

from mathrl import sweep

BASE = "configs/default.py"
METHODS = ("grpo", "dr_grpo", "dapo", "gspo", "dgpo", "bnpo", "ngrpo",
           "mc_grpo", "steer")
# Seed-major order: every method of seed 0 runs before any of seed 1, so a
# sweep stopped part-way still compares all methods on the same seeds.
POINTS = sorted(sweep.seeds(
    [sweep.recipe_on_base(f"configs/{m}.py", BASE) for m in METHODS],
    [0, 1, 2]), key=lambda point: point["seed"])
