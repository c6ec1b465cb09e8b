"""Training speed without changing results: the precision decision, answer-only logits, bf16 runs."""

from __future__ import annotations

import json

import pytest

from core.jsonio import read_json
from core.training.hf_train import run_real_training
from core.training.precision import choose_precision, cpu_flags
from core.training.predict import predict
from tests.core.training_helpers import EventRecorder, sample_records, tiny_config

# The written quality tolerance of bf16 against fp32 on the same run (issue 12): the final
# training loss within this much (absolute) of the fp32 run's, and the same answers.
BF16_LOSS_TOLERANCE = 0.05

SAPPHIRE_RAPIDS = frozenset({"fpu", "sse2", "avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"})
SKYLAKE_SERVER = frozenset({"fpu", "sse2", "avx2", "avx512f", "avx512bw"})  # AVX-512, but no bf16
ZEN3 = frozenset({"fpu", "sse2", "avx2"})


# --------------------------------------------------------------------------- precision decision


@pytest.mark.parametrize(("flags", "expected"), [
    (SAPPHIRE_RAPIDS, "bf16"),
    (frozenset({"avx512f", "avx512_bf16"}), "bf16"),  # Cooper Lake, Zen 4: AVX-512 BF16 without AMX
    (frozenset({"amx_bf16"}), "bf16"),
    (SKYLAKE_SERVER, "fp32"),
    (ZEN3, "fp32"),
    (frozenset(), "fp32"),
    (None, "fp32"),  # flags unreadable (not Linux): never assume
])
def test_auto_on_the_cpu_picks_bf16_only_with_native_support(flags, expected) -> None:
    choice = choose_precision("auto", "cpu", flags)
    assert choice.precision == expected
    assert choice.reason.startswith("auto: ")
    if expected == "bf16":
        assert "natively" in choice.reason and ("avx512_bf16" in choice.reason or "amx_bf16" in choice.reason)


def test_explicit_precision_is_kept_and_emulated_bf16_is_called_out() -> None:
    assert choose_precision("fp32", "cpu", SAPPHIRE_RAPIDS).precision == "fp32"
    slow = choose_precision("bf16", "cpu", ZEN3)
    assert slow.precision == "bf16" and "emulated" in slow.reason
    assert "emulated" not in choose_precision("bf16", "cpu", SAPPHIRE_RAPIDS).reason


def test_auto_on_gpus() -> None:
    assert choose_precision("auto", "cuda", None, cuda_bf16=True).precision == "bf16"
    assert choose_precision("auto", "cuda", None, cuda_bf16=False).precision == "fp16"
    assert choose_precision("auto", "mps", None).precision == "fp32"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\n"
                    "processor\t: 1\nflags\t\t: fpu sse2 avx512f avx512_bf16\n", encoding="utf-8")
    assert cpu_flags(info) == frozenset({"fpu", "sse2", "avx512f", "avx512_bf16"})
    assert choose_precision("auto", "cpu", cpu_flags(info)).precision == "bf16"
    assert cpu_flags(tmp_path / "missing") is None
    (tmp_path / "arm").write_text("processor\t: 0\nFeatures\t: fp asimd\n", encoding="utf-8")
    assert choose_precision("auto", "cpu", cpu_flags(tmp_path / "arm")).precision == "fp32"


def test_the_run_logs_and_records_its_precision(tmp_path) -> None:
    recorder = EventRecorder()
    report = run_real_training(tiny_config(tmp_path / "out", max_steps=1, precision="fp32"), on_event=recorder)
    assert report["precision"] == "fp32" and report["precision_reason"] == "fp32 as asked"
    assert read_json(tmp_path / "out" / "training_report.json")["precision_reason"] == "fp32 as asked"
    assert any(e.message.startswith("precision fp32: fp32 as asked") for e in recorder.of("log"))


# --------------------------------------------------------------------------- answer-only logits


def _batch(base: str, lora: bool, seed: int = 0):
    from core.models.batching import DynamicPadCollator
    from core.models.prompting import build_prompt_format, encode_example
    from core.models.tiny import build_tiny_model

    arch = "seq2seq" if base == "tiny-seq2seq" else "causal"
    model, tokenizer = build_tiny_model(base, seed=seed)
    if lora:
        from peft import LoraConfig, TaskType, get_peft_model

        targets = ["q", "v", "o", "wi", "wo"] if arch == "seq2seq" else ["q_proj", "v_proj", "up_proj"]
        model = get_peft_model(model, LoraConfig(
            r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets, init_lora_weights=False,
            task_type=TaskType.SEQ_2_SEQ_LM if arch == "seq2seq" else TaskType.CAUSAL_LM))
    fmt = build_prompt_format(tokenizer, arch, 256, getattr(model.config, "decoder_start_token_id", None))
    examples = [encode_example(tokenizer, fmt, r["input"], r["output"], 256) for r in sample_records()]
    batch = DynamicPadCollator(fmt.pad_token_id, arch)(
        [{"input_ids": ex.input_ids, "labels": ex.labels} for ex in examples])
    return model, batch


def _loss_and_grads(model, loss):
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    return float(loss.detach()), grads


@pytest.mark.parametrize("lora", [False, True])
@pytest.mark.parametrize("base", ["tiny-causal", "tiny-seq2seq"])
def test_answer_only_logits_give_the_full_logits_loss_and_gradients(base, lora) -> None:
    import torch

    from core.training.answer_loss import answer_loss

    model, batch = _batch(base, lora)
    model.train()
    torch.manual_seed(0)
    full, full_grads = _loss_and_grads(model, model(**batch).loss)
    torch.manual_seed(0)
    loss, outputs = answer_loss(model, batch)
    ours, our_grads = _loss_and_grads(model, loss)

    answer_tokens = int((batch["labels"] != -100).sum())
    assert outputs.logits.shape[0] == answer_tokens < batch["labels"].numel()  # the head saw answers only
    assert ours == pytest.approx(full, rel=1e-5)
    assert our_grads.keys() == full_grads.keys() and our_grads
    for name, grad in full_grads.items():
        torch.testing.assert_close(our_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_answer_only_loss_follows_num_items_in_batch() -> None:
    """Summed over answer tokens and divided by the Trainer's count (gradient accumulation)."""
    import torch

    from core.training.answer_loss import answer_loss

    model, batch = _batch("tiny-causal", lora=False)
    count = int((batch["labels"][:, 1:] != -100).sum())
    mean, _ = answer_loss(model, batch)
    scaled, _ = answer_loss(model, batch, num_items_in_batch=torch.tensor(3 * count))
    assert float(scaled) == pytest.approx(float(mean) / 3, rel=1e-5)


def test_trainer_evaluates_the_same_loss_as_the_model() -> None:
    from transformers import TrainingArguments

    from core.training.answer_loss import make_answer_only_trainer

    model, batch = _batch("tiny-causal", lora=True)
    model.eval()
    args = TrainingArguments(output_dir="unused", use_cpu=True, report_to="none", prediction_loss_only=True)
    trainer = make_answer_only_trainer(model=model, args=args)
    loss, logits, _ = trainer.prediction_step(model, dict(batch), prediction_loss_only=True)
    assert logits is None
    assert float(loss) == pytest.approx(float(model(**batch).loss), rel=1e-5)


# --------------------------------------------------------------------------- bf16 runs


def test_bf16_run_of_a_tiny_model_learns_the_sample_like_fp32(tmp_path) -> None:
    runs = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        runs[precision] = run_real_training(tiny_config(out, epochs=300, precision=precision))
        assert runs[precision]["precision"] == precision
        for record in sample_records():
            assert predict(out, record["input"], max_new_tokens=128) == record["output"], precision
    losses = {p: [h["loss"] for h in r["log_history"] if "loss" in h] for p, r in runs.items()}
    assert abs(losses["bf16"][-1] - losses["fp32"][-1]) <= BF16_LOSS_TOLERANCE, losses
    assert losses["bf16"][-1] < losses["bf16"][0] / 10


def test_bf16_lora_trains_on_a_bf16_base_and_saves_the_fp32_base(tmp_path, monkeypatch) -> None:
    """The frozen base is kept in bf16 while training and restored before the merge, so the
    saved model is the fp32 base plus the adapter (a zero adapter would give the base exactly)."""
    import torch
    from safetensors.torch import load_file

    import core.training.hf_train as hf_train
    from core.models.tiny import build_tiny_model

    uncast = []
    original = hf_train.lora_inputs_as_they_come

    def spy(model, active):
        uncast.append(active)
        return original(model, active)

    monkeypatch.setattr(hf_train, "lora_inputs_as_they_come", spy)
    out = tmp_path / "out"
    recorder = EventRecorder()
    report = run_real_training(tiny_config(out, lora=True, max_steps=3, precision="bf16", device="cpu",
                                           learning_rate=1e-3), on_event=recorder)
    assert report["status"] == "completed" and report["precision"] == "bf16"
    assert uncast == [True]  # the adapters took their inputs in bf16 while training
    assert any("train as single autograd steps" in e.message for e in recorder.of("log"))
    base, _ = build_tiny_model("tiny-causal", seed=0)
    saved = load_file(str(out / "model" / "model.safetensors"))
    untouched = [n for n in saved if "norm" in n or "embed" in n]
    assert untouched
    for name in untouched:  # not adapted: exactly the fp32 base, not its bf16 rounding
        assert saved[name].dtype == torch.float32
        assert torch.equal(saved[name], base.state_dict()[name]), name
    adapted = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(saved[adapted], base.state_dict()[adapted])  # the adapter was merged
    assert json.loads((out / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))["r"] == 16


# --------------------------------------------------------------------------- attention kernel


def test_eager_attention_only_for_short_records_of_causal_models_on_a_cpu() -> None:
    from core.training.attention import EAGER_MAX_TOKENS, training_attention

    assert training_attention("cpu", "causal", 80) == "eager"
    assert training_attention("cpu", "causal", EAGER_MAX_TOKENS) == "eager"
    assert training_attention("cpu", "causal", EAGER_MAX_TOKENS + 1) is None  # the fused kernel is as fast and leaner
    assert training_attention("cuda", "causal", 80) is None
    assert training_attention("cpu", "seq2seq", 80) is None
    assert training_attention("cpu", "causal", 0) is None


def test_training_runs_eager_attention_and_saves_the_models_own_kernel(tmp_path) -> None:
    import torch
    from transformers import AutoConfig

    phase = {"now": "setup"}
    fused_calls: list[str] = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):  # the fused kernel: must not run in the training loop
        fused_calls.append(phase["now"])
        return original(*args, **kwargs)

    def follow(event) -> None:
        if event.kind == "stage":
            phase["now"] = event.stage

    recorder = EventRecorder(follow)
    torch.nn.functional.scaled_dot_product_attention = spy
    try:
        run_real_training(tiny_config(tmp_path / "out", lora=True, max_steps=2, device="cpu"), on_event=recorder)
    finally:
        torch.nn.functional.scaled_dot_product_attention = original
    assert any("attention eager while training" in e.message for e in recorder.of("log"))
    assert "train" not in fused_calls
    assert fused_calls, "the evaluation after training answers with the model's own kernel again"
    saved = AutoConfig.from_pretrained(str(tmp_path / "out" / "model"))
    assert getattr(saved, "_attn_implementation", None) in (None, "sdpa")


# --------------------------------------------------------------------------- restoring the fp32 base


def test_restore_from_files_gives_back_every_fp32_tensor_including_tied_ones(tmp_path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from core.models.tiny import build_tiny_model
    from core.training.precision import restore_frozen_from_files, store_frozen_in_bf16

    base, _ = build_tiny_model("tiny-causal", seed=3)
    base.save_pretrained(tmp_path)
    expected = {name: tensor.clone() for name, tensor in base.state_dict().items()}
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    assert store_frozen_in_bf16(model) > 0
    assert restore_frozen_from_files(model, tmp_path) > 0
    restored = model.get_base_model().state_dict()
    for name, tensor in expected.items():
        key = name.replace("q_proj.weight", "q_proj.base_layer.weight")
        assert restored[key].dtype == torch.float32, name
        assert torch.equal(restored[key], tensor), name  # the published values, not the bf16 rounding
    assert restore_frozen_from_files(model, tmp_path / "nowhere") is None


def test_the_kernel_cache_is_capped_unless_the_user_chose(monkeypatch) -> None:
    from core.memory import KERNEL_CACHE_CAPACITY, limit_kernel_cache

    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    limit_kernel_cache()
    import os

    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(KERNEL_CACHE_CAPACITY)
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "512")
    limit_kernel_cache()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "512"


# --------------------------------------------------------------------------- LoRA inputs under autocast


def test_lora_layers_take_bf16_inputs_as_they_come_for_the_same_loss_and_gradients() -> None:
    """PEFT's cast of each adapted layer's input to fp32 (undone at once by autocast) is skipped
    while training in mixed precision: fewer activation copies, the same numbers."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from core.training.answer_loss import answer_loss
    from core.training.precision import lora_inputs_as_they_come, store_frozen_in_bf16

    class ActivationCasts(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._to_copy.default and args[0].dim() > 2:  # [batch, tokens, hidden]
                self.count += 1
            return func(*args, **(kwargs or {}))

    model, batch = _batch("tiny-causal", lora=True)
    store_frozen_in_bf16(model)
    model.train()
    results = {}
    for active in (False, True):
        with ActivationCasts() as casts, lora_inputs_as_they_come(model, active):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss, _ = answer_loss(model, batch)
            results[active] = (casts.count, *_loss_and_grads(model, loss))
    (plain_casts, plain_loss, plain_grads), (our_casts, our_loss, our_grads) = results[False], results[True]
    assert our_casts < plain_casts
    assert our_loss == plain_loss
    for name, grad in plain_grads.items():
        assert torch.equal(our_grads[name], grad), name
    layers = [m for m in model.modules() if hasattr(m, "cast_input_dtype_enabled")]
    assert layers and all(m.cast_input_dtype_enabled for m in layers)  # PEFT's behaviour is back afterwards


# --------------------------------------------------------------------------- lean layers


def _bf16_step(model, batch, lean: bool):
    import torch

    from core.training.answer_loss import answer_loss
    from core.training.lean_layers import lean_layers

    with lean_layers(model, active=lean) as swapped, torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = answer_loss(model, batch)
    return swapped, *_loss_and_grads(model, loss)


def test_lean_layers_give_peft_and_hf_loss_and_gradients_as_single_nodes() -> None:
    """One autograd node per adapted layer and per norm, the same numbers as PEFT's and HF's
    layers (bf16 rounding apart), and the model's own layers back afterwards."""
    import torch
    from peft.tuners.lora import Linear as PeftLoraLinear

    from core.training.precision import store_frozen_in_bf16

    model, batch = _batch("tiny-causal", lora=True)  # adapters with random (non-zero) B
    store_frozen_in_bf16(model)
    model.train()
    _, plain_loss, plain_grads = _bf16_step(model, batch, lean=False)
    swapped, lean_loss, lean_grads = _bf16_step(model, batch, lean=True)

    adapted = [m for m in model.modules() if isinstance(m, PeftLoraLinear)]
    norms = [m for m in model.modules() if type(m).__name__ == "LlamaRMSNorm"]
    assert swapped == len(adapted) + len(norms) > len(norms) > 0
    assert lean_loss == pytest.approx(plain_loss, rel=2e-3)
    assert lean_grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():  # fp32 gradients of bf16 products: a bf16 tolerance
        torch.testing.assert_close(lean_grads[name], grad, rtol=0.05, atol=0.02 * float(grad.abs().max()),
                                   msg=name)
    assert not any("forward" in vars(m) for m in adapted + norms)  # PEFT's and HF's forwards are back


def test_lean_functions_have_the_gradients_of_the_formulas_they_replace() -> None:
    """The hand-written backwards against autograd's: gradcheck for the adapter, HF's norm for the norm."""
    import torch

    from core.training.lean_layers import lora_linear_function, rms_norm_function

    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, 8, dtype=torch.float64)
    a = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, a, b: lora_linear_function().apply(x, weight, a, b, 2.0), (x, a, b))
    expected = x @ weight.t() + 2.0 * (x @ a.t()) @ b.t()
    torch.testing.assert_close(lora_linear_function().apply(x, weight, a, b, 2.0), expected)

    # The norm computes in fp32 like HF's, so it is checked against HF's module (autograd) in fp32.
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    hf_norm = LlamaRMSNorm(8, eps=1e-5).requires_grad_(False)
    hf_norm.weight.copy_(torch.randn(8))
    x32 = torch.randn(2, 3, 8, requires_grad=True)
    grad = torch.randn(2, 3, 8)
    expected, = torch.autograd.grad(hf_norm(x32), x32, grad)
    ours = rms_norm_function().apply(x32, hf_norm.weight, 1e-5)
    torch.testing.assert_close(ours, hf_norm(x32))
    torch.testing.assert_close(torch.autograd.grad(ours, x32, grad)[0], expected)


def test_lean_layers_leave_other_layers_alone() -> None:
    """A LoRA dropout (or anything else PEFT's layer does beyond the plain adapter) keeps PEFT's forward."""
    from peft import LoraConfig, get_peft_model

    from core.models.tiny import build_tiny_model
    from core.training.lean_layers import lean_layers
    from core.training.precision import store_frozen_in_bf16

    model, _ = build_tiny_model("tiny-causal", seed=0)
    model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, lora_dropout=0.1, target_modules=["q_proj"]))
    store_frozen_in_bf16(model)
    norms = sum(type(m).__name__ == "LlamaRMSNorm" for m in model.modules())
    with lean_layers(model, active=True) as swapped:
        assert swapped == norms  # the norms only
    with lean_layers(model, active=False) as swapped:
        assert swapped == 0


# --------------------------------------------------------------------------- fixed costs of a run


def test_the_trainers_flops_estimate_is_hfs_with_the_parameters_counted_once(monkeypatch) -> None:
    from transformers import Trainer, TrainingArguments

    from core.training.answer_loss import make_answer_only_trainer

    model, batch = _batch("tiny-causal", lora=True)
    args = TrainingArguments(output_dir="unused", use_cpu=True, report_to="none")
    trainer = make_answer_only_trainer(model=model, args=args)
    expected = Trainer.floating_point_ops(trainer, batch)
    counted = []
    inner = type(model.get_base_model())  # PEFT hands num_parameters on to the transformers model
    original = inner.num_parameters

    def counting(self, *args, **kwargs):
        counted.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(inner, "num_parameters", counting)
    assert [trainer.floating_point_ops(batch) for _ in range(3)] == [expected] * 3
    assert expected > 0 and len(counted) == 1


def test_objects_alive_at_the_start_are_left_out_of_gc_only_inside_the_block() -> None:
    import gc

    from core.memory import objects_alive_now_left_out_of_gc

    before = gc.get_freeze_count()
    with objects_alive_now_left_out_of_gc():
        assert gc.get_freeze_count() > before
    assert gc.get_freeze_count() == 0


def test_a_steady_heap_keeps_freed_buffers_for_the_next_step() -> None:
    """Inside the block a buffer freed and allocated again costs no new page faults (glibc)."""
    import ctypes.util
    import resource

    import torch

    from core.memory import steady_heap

    if not ctypes.util.find_library("c") or not hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "mallopt"):
        pytest.skip("no glibc here")

    def faults_of_five_steps() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            torch.empty(16 * 1024 * 1024).fill_(1.0)  # 64 MB, like a step's logits: freed at once
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    plain = faults_of_five_steps()
    with steady_heap():
        steady = faults_of_five_steps()
    assert steady < plain / 2, (steady, plain)


def test_zero_grad_of_the_trainable_parameters_only_while_training() -> None:
    from core.training.trainer_setup import zero_grad_of_trainable

    model, batch = _batch("tiny-causal", lora=True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    with zero_grad_of_trainable(model):
        model(**batch).loss.backward()
        assert all(p.grad is not None for p in trainable)
        model.zero_grad()
        assert all(p.grad is None for p in model.parameters())
    assert "zero_grad" not in vars(model)
