"""Partial fine-tuning (training.finetune, finetune_zoo) and the fine_tuning study."""

import json
import shutil

import jax
import numpy as np
import pytest
from flax import nnx

from repro_jax import data as data_lib
from repro_jax import settings as settings_lib
from repro_jax.networks import finetune_zoo
from repro_jax.networks import model_zoo
from repro_jax.networks import training
from repro_jax.networks.training import config as config_lib
from repro_jax.networks.training import finetune
from repro_jax.networks.training import step as step_lib
from repro_jax.studies import fine_tuning as ft_study
from repro_jax.studies import runner

_DIT = dict(name="dit", width=8, depth=2, num_heads=2, patch_size=2, emb_dim=8)


def _cfg(model=None, steps=4, **train):
  return settings_lib.override(training.variant("smoke"), dict(
      data=dict(name="digits", num_train=-1), model=dict(model or _DIT),
      diffusion=dict(parameterization="edm"), optim=dict(warmup_steps=1),
      train=dict(dict(batch_size=8, num_steps=steps, log_every=2, checkpoint_every=2,
                      keep_checkpoints=3, step_loop="scan"), **train)))


@pytest.fixture(scope="module")
def digits():
  return data_lib.load_dataset(_cfg().data)


def _trainer(cfg, ds):
  return step_lib.make_trainer(cfg, ds.data_shape)


def test_attention_filter_selects_exactly_the_attention_leaves(digits):
  dit = _trainer(_cfg(), digits)
  want = [("blocks", i, "attn", mod, leaf) for i in range(2) for mod in ("proj", "qkv")
          for leaf in ("bias", "kernel")]
  assert finetune.selected_paths(dit, "attention") == want
  mask = finetune.param_mask(dit, "attention")
  assert mask.sum() == 2 * (8 * 8 + 8 + 8 * 24 + 24)          # proj and qkv of 2 blocks
  # The mask sits where the layout puts those leaves.
  tree = dit.layout.unravel(np.arange(dit.layout.size, dtype=np.float64))
  picked = np.concatenate([np.ravel(tree["blocks"][i]["attn"][m][l]) for i in range(2)
                           for m in ("proj", "qkv") for l in ("bias", "kernel")])
  np.testing.assert_array_equal(np.sort(picked).astype(int), np.flatnonzero(mask))
  # The U-Net's attention blocks (at 4×4 on 8×8 digits), every leaf of each.
  unet = _trainer(_cfg(dict(name="unet", width=8, norm_groups=4, ch_mult=(1, 2),
                            attn_resolutions=(4,))), digits)
  got = finetune.selected_paths(unet, "attention")
  blocks = [("down_attn", 1), ("mid_attn",), ("up_attn", 0), ("up_attn", 1)]
  leaves = [("norm", "bias"), ("norm", "scale"), ("proj_out", "bias"),
            ("proj_out", "kernel"), ("qkv", "bias"), ("qkv", "kernel")]
  assert sorted(got, key=str) == sorted([b + l for b in blocks for l in leaves], key=str)
  # Any NNX filter works; one that selects nothing is refused.
  assert finetune.selected_paths(dit, nnx.All(nnx.Param, nnx.PathContains("mlp0"))) == [
      ("blocks", i, "mlp0", l) for i in range(2) for l in ("bias", "kernel")]
  with pytest.raises(ValueError, match="selects no parameter"):
    finetune.param_mask(dit, nnx.PathContains("no_such_layer"))
  with pytest.raises(ValueError, match="unknown parameter filter"):
    finetune.param_mask(dit, "attn_only")
  assert finetune.param_mask(dit, "all").all()


def _adam_oracle(grads, mask, cfg, lr_at):
  """NumPy float64 clip-by-global-norm + Adam over the trained entries only."""
  o = cfg.optim
  p = np.zeros(grads.shape[1])
  m = np.zeros_like(p)
  v = np.zeros_like(p)
  out = []
  for t, g in enumerate(np.asarray(grads, np.float64)):
    g = np.where(mask, g, 0.0)
    norm = np.linalg.norm(g)
    if norm > o.grad_clip:
      g = g * o.grad_clip / norm
    m = o.b1 * m + (1 - o.b1) * g
    v = o.b2 * v + (1 - o.b2) * g * g
    mh, vh = m / (1 - o.b1 ** (t + 1)), v / (1 - o.b2 ** (t + 1))
    p = p - lr_at(t) * np.where(mask, mh / (np.sqrt(vh) + o.eps), 0.0)
    out.append(p.copy())
  return np.stack(out)


def test_masked_optimizer_matches_numpy_adam_on_the_trained_entries():
  cfg = _cfg()
  rng = np.random.default_rng(0)
  mask = rng.random(50) < 0.3
  grads = rng.normal(size=(6, 50)).astype(np.float32) * 3.0        # clipping is active
  opt = finetune.masked_optimizer(config_lib.optimizer(cfg.optim), mask)
  params = np.zeros(50, np.float32)
  state = opt.init(params)
  got = []
  for g in grads:
    upd, state = opt.update(g, state, params)
    params = params + np.asarray(upd)
    got.append(params.copy())
  lr = config_lib.learning_rate(cfg.optim)
  want = _adam_oracle(grads, mask, cfg, lambda t: float(lr(t)))
  np.testing.assert_allclose(np.stack(got), want, rtol=2e-5, atol=1e-7)
  assert np.all(np.stack(got)[:, ~mask] == 0.0)


def _base(trainer, keys, jitter=0.0):
  """Initial parameters; `jitter` adds noise, a stand-in for pretrained ones (a
  fresh DiT's adaLN-Zero gates are 0, so its attention would get no gradient)."""
  out = np.stack([np.asarray(step_lib.init_state(trainer, jax.random.key(k)).params)
                  for k in keys])
  return out + jitter * np.random.default_rng(keys[0]).normal(size=out.shape).astype(np.float32)


def test_full_fine_tuning_is_train_many_from_the_same_start(digits):
  """With every parameter trained, fine-tuning from the initialization that
  `train_many` draws is `train_many` (the trainer's own loop, an independent path)."""
  cfg = _cfg(steps=4)
  trainer = _trainer(cfg, digits)
  seeds, subsets = (3, 4), [np.arange(10), np.arange(100, 130)]
  want, _ = training.train_many(cfg, None, seeds=seeds, subsets=subsets, dataset=digits)
  got, _ = finetune.finetune_many(cfg, None, base=_base(trainer, seeds),
                                  mask=finetune.param_mask(trainer, "all"), seeds=seeds,
                                  subsets=subsets, dataset=digits)
  np.testing.assert_allclose(np.asarray(got.params), np.asarray(want.params), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(np.asarray(got.ema), np.asarray(want.ema), rtol=1e-5, atol=1e-6)


def test_bad_inputs_are_refused_before_any_work(digits):
  cfg = _cfg()
  trainer = _trainer(cfg, digits)
  base = _base(trainer, (0,))
  mask = finetune.param_mask(trainer, "attention")
  run = lambda **kw: finetune.finetune_many(
      cfg, None, **dict(dict(base=base, mask=mask, seeds=(0,), subsets=[np.arange(4)],
                             dataset=digits), **kw))
  with pytest.raises(ValueError, match="selects no parameter"):
    run(mask=np.zeros_like(mask))
  with pytest.raises(ValueError, match=r"base \[M=1"):
    run(base=base[:, :10])
  with pytest.raises(ValueError, match="NaN"):
    run(base=np.full_like(base, np.nan))


def test_group_resumes_and_is_restored(digits, tmp_path):
  cfg = _cfg(steps=4)
  trainer = _trainer(cfg, digits)
  sizes, seeds = (4, 8), (0,)            # two models, on 4 and 8 images
  subsets = model_zoo.nested_subsets(len(digits), sizes, 0)
  base = _base(trainer, (5, 6), jitter=0.1)
  kw = dict(base=base, filt="attention", sizes=sizes, seeds=seeds, subsets=subsets,
            dataset=digits)
  g1 = finetune_zoo.ensure_finetuned(cfg, tmp_path, "ft", **kw)
  # Only the named parameters change: the others are bit-identical to the base.
  mask = finetune.param_mask(trainer, "attention")
  got = np.asarray(g1.params)                                   # the EMA, [M, P]
  np.testing.assert_array_equal(got[:, ~mask], base[:, ~mask])
  assert np.all(np.abs(got[:, mask] - base[:, mask]).max(axis=1) > 0)
  info = json.loads((tmp_path / g1.workdir.split("/")[-1] / "zoo_info.json").read_text())
  assert info["trained_paths"][0] == "blocks/0/attn/proj/bias" and info["num_steps"] == 4
  # Cut the run back to its step-2 checkpoint: resuming gives the same models.
  shutil.rmtree(f"{g1.workdir}/checkpoints/4")
  g2 = finetune_zoo.ensure_finetuned(cfg, tmp_path, "ft", **kw)
  np.testing.assert_array_equal(np.asarray(g2.params), np.asarray(g1.params))
  # A finished group is restored (no training: its info is not rewritten).
  before = (tmp_path / g1.workdir.split("/")[-1] / "zoo_info.json").stat().st_mtime_ns
  g3 = finetune_zoo.ensure_finetuned(cfg, tmp_path, "ft", **kw)
  assert (tmp_path / g1.workdir.split("/")[-1] / "zoo_info.json").stat().st_mtime_ns == before
  np.testing.assert_array_equal(np.asarray(g3.params), np.asarray(g1.params))
  # Other pretrained parameters are other models: another directory.
  g4 = finetune_zoo.ensure_finetuned(cfg, tmp_path, "ft", **dict(kw, base=base + 1e-3))
  assert g4.workdir != g1.workdir
  assert g1.denoise.num_models == 2


# The study ----------------------------------------------------------------------------

def test_class_split_and_nested_subsets():
  s = ft_study.settings("cpu")
  labels = np.arange(200) % 10
  sub = ft_study.target_subsets(labels, settings_lib.override(
      s, {"zoo": {"sizes": (4, 16, 100)}}))
  assert [len(sub[n]) for n in (4, 16, 100)] == [4, 16, 100]
  assert set(sub[4]) < set(sub[16]) < set(sub[100])
  assert set(labels[sub[100]]) == {5, 6, 7, 8, 9}
  assert not set(ft_study.class_rows(labels, s.pretrain_classes)) & set(sub[100])
  with pytest.raises(ValueError, match="<= 100"):
    ft_study.target_subsets(labels, settings_lib.override(s, {"zoo": {"sizes": (4, 101)}}))
  with pytest.raises(ValueError, match="disjoint"):
    ft_study.Settings(pretrain_classes=(0, 5))
  with pytest.raises(ValueError, match="trainable"):
    settings_lib.override(s, {"trainable": "attn"})


def test_pair_cells_point_values_match_a_loop():
  rng = np.random.default_rng(0)
  kind_of = np.array(["ft", "ft", "scratch", "scratch", "scratch", "pre"])
  hits = rng.random((6, 6, 30)) < 0.5
  est = ft_study.pair_cells(hits, kind_of, ft_study._PAIRS, jax.random.key(0), 200, 0.9)
  for label, (a, b) in ft_study._PAIRS.items():
    vals = [hits[i, j].mean() for i in range(6) for j in range(6)
            if kind_of[i] == a and kind_of[j] == b and i != j]
    assert est[label].value == pytest.approx(np.mean(vals), abs=1e-12), label
    assert est[label].lo <= est[label].value + 1e-12 <= est[label].hi + 2e-12


def _rows(**mem_gen):
  base = dict(rp_ft_scratch=0.3, rp_scratch=0.8, rp_ft=0.5, rp_ft_pre=0.2, rp_scratch_pre=0.1,
              gl_ft=0.6, gl_scratch=0.1, copy_pre_ft=0.0, copy_pre_scratch=0.0)
  rows = []
  for n, over in ((4, mem_gen.get("mem", {})), (64, mem_gen.get("gen", {}))):
    r = {"N": n, "similarity": "learned"}
    for k, v in dict(base, **over).items():
      r[k], r[f"{k}_lo"], r[f"{k}_hi"] = v, v - 0.05, v + 0.05
    rows.append(r)
  return {"rows": rows}


def test_verdicts_follow_the_declared_criteria():
  s = ft_study.settings("smoke")
  gen_same = dict(rp_ft_scratch=0.75, rp_scratch=0.8, gl_ft=0.9, gl_scratch=0.85)
  v = ft_study.verdicts(s, _rows(gen=gen_same))
  assert [x.verdict for x in v] == ["reproduced", "reproduced", "reproduced"]
  v = ft_study.verdicts(s, _rows(mem=dict(rp_ft_scratch=0.78), gen=dict(gen_same, gl_ft=0.5)))
  assert [x.verdict for x in v] == ["not reproduced", "reproduced", "partly"]
  # A premise that fails: not tested.
  v = ft_study.verdicts(s, _rows(mem=dict(gl_scratch=0.9), gen=dict(gl_scratch=0.2)))
  assert [x.verdict for x in v] == ["not tested"] * 3


def test_smoke_run(tmp_path):
  s = settings_lib.override(ft_study.settings("smoke"), {
      "zoo": {"dir": str(tmp_path / "zoo"), "sizes": (4, 8)}, "learned": False,
      "verdict_similarity": "cal", "num_noises": 8, "chunk": 8, "calib_pairs": 50,
      "sampler": ("Heun", "heun", 2), "bootstrap_resamples": 20})
  m = runner.run_study("fine_tuning", s, tmp_path / "out")
  for f in ("rp_gl.png", "samples.png", "samples.npz", "scores.csv", "metrics.json",
            "report.md"):
    assert (tmp_path / "out" / f).stat().st_size > 0, f
  assert len(m["verdicts"]) == 3
  assert json.loads((tmp_path / "out" / "metrics.json").read_text())["verdicts"] == m["verdicts"]
  assert [r["N"] for r in m["rows"]] == [4, 8]
  assert m["trained_paths"][0] == "blocks/0/attn/proj/bias"
  for r in m["rows"]:
    for k in ("rp_ft_scratch", "rp_scratch", "rp_ft", "gl_ft", "gl_scratch"):
      assert 0.0 <= r[f"{k}_lo"] <= r[k] + 1e-12 <= r[f"{k}_hi"] + 2e-12 <= 1.0 + 3e-12, k
