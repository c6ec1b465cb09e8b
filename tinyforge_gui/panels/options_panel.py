"""Training, export and output options; converts to and from the plain dict of a run's options.

The dict mirrors ``core.runs.RunOptions`` (``train`` = ``TrainConfig`` fields, ``export``), so
the same shape is saved in QSettings, written to run.json and loaded back from a past run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSignalBlocker, QStringListModel, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QCompleter,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core import options_defaults as defaults
from tinyforge_gui.widgets.common import make_icon
from tinyforge_gui.widgets.theme import style_label

if TYPE_CHECKING:
    from core.models.lora_modules import LoraModules

logger = logging.getLogger(__name__)

FALLBACK_MODELS: dict[str, str] = {
    defaults.DEFAULT_BASE_MODEL: "SmolLM2-135M-Instruct, the offline starter model",
    "tiny-causal": "tiny random Llama with a byte tokenizer (fast, for trying things out)",
    "tiny-seq2seq": "tiny random T5 with a byte tokenizer (fast, for trying things out)",
}


def builtin_models() -> dict[str, str]:
    """Base model names with a description (the registry; it loads after the first paint)."""
    from core.models.registry import BUILTIN_MODELS

    return dict(BUILTIN_MODELS)


DEVICES: dict[str, str] = {
    "auto": "auto: CUDA when present, else Apple MPS, else CPU",
    "cpu": "CPU",
    "cuda": "NVIDIA GPU (CUDA)",
    "mps": "Apple GPU (Metal)",
}
LOSS_ON: dict[str, str] = {  # TrainConfig.loss_on: text shown in the form
    "all": "every answer",
    "last": "the last answer",
}
PRECISIONS: dict[str, str] = {
    "auto": "auto: bf16 where the GPU or CPU supports it (else fp16 on a GPU, fp32 on a CPU)",
    "fp32": "fp32: full precision",
    "bf16": "bf16 mixed precision (recent GPUs; CPUs with AVX-512 BF16 or AMX)",
    "fp16": "fp16 mixed precision (GPUs)",
}


class ModuleListCompleter(QCompleter):
    """Completes the last name of a comma-separated list of module names."""

    def splitPath(self, path: str) -> list[str]:  # noqa: N802 - Qt override
        return [path.split(",")[-1].strip()]

    def pathFromIndex(self, index) -> str:  # noqa: ANN001, N802 - Qt override
        widget = self.widget()
        text = widget.text() if isinstance(widget, QLineEdit) else ""
        head = [n.strip() for n in text.split(",")[:-1] if n.strip()]
        return ",".join([*head, str(index.data())])


def _combo(items: dict[str, str], name: str, tip: str) -> QComboBox:
    box = QComboBox()
    box.setObjectName(name)
    for key, description in items.items():
        box.addItem(key)
        box.setItemData(box.count() - 1, description, Qt.ItemDataRole.ToolTipRole)
    box.setToolTip(tip)
    box.setAccessibleName(tip.split(".")[0])
    return box


def default_output_root() -> str:
    return str(Path.home() / "TinyForge" / "runs")


def _spin(lo: int, hi: int, value: int, name: str, tip: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    box.setObjectName(name)
    box.setToolTip(tip)
    box.setAccessibleName(tip.split(".")[0])
    return box


def _dspin(lo: float, hi: float, value: float, decimals: int, step: float, name: str, tip: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setValue(value)
    box.setObjectName(name)
    box.setToolTip(tip)
    box.setAccessibleName(tip.split(".")[0])
    return box


def _auto_spin(hi: int, name: str, tip: str) -> QSpinBox:
    """An integer spin box whose 0 reads "auto" (the recipe decides)."""
    box = _spin(0, hi, 0, name, tip)
    box.setSpecialValueText("auto")
    return box


def _lowest(limits: defaults.Limits) -> float:
    """The smallest value a spin box may show for a field: its bound (for a ``gt`` bound, the
    bound itself reads "auto": the spin box's special value, never sent as a number)."""
    bound = limits.ge if limits.ge is not None else limits.gt
    return 0 if bound is None else bound


def _auto(value: float) -> float | None:
    return value if value > 0 else None


def _with_browse(field: QWidget, name: str, tip: str, slot: Any) -> QHBoxLayout:
    """``field`` with a folder button beside it that calls ``slot``."""
    browse = QToolButton()
    browse.setObjectName(name)
    browse.setIcon(make_icon("folder"))
    browse.setToolTip(tip)
    browse.setAccessibleName(tip.split(" (")[0])
    browse.clicked.connect(slot)
    row = QHBoxLayout()
    row.addWidget(field, 1)
    row.addWidget(browse)
    return row


def _check(text: str, name: str, tip: str, checked: bool = False) -> QCheckBox:
    box = QCheckBox(text)
    box.setObjectName(name)
    box.setChecked(checked)
    box.setToolTip(tip)
    box.setAccessibleName(text)
    return box


class VariantsSpin(QSpinBox):
    """Rephrasings per question: -1 reads "auto" (the recipe's), 0 reads "off"."""

    def textFromValue(self, value: int) -> str:  # noqa: N802 - Qt override
        return {-1: "auto", 0: "off"}.get(value, str(value))

    def valueFromText(self, text: str) -> int:  # noqa: N802 - Qt override
        lowered = text.strip().casefold()
        if lowered in ("auto", ""):
            return -1
        if lowered == "off":
            return 0
        try:
            return int(lowered)
        except ValueError:
            return -1

    def validate(self, text: str, pos: int) -> object:
        from PySide6.QtGui import QValidator

        lowered = text.strip().casefold()
        if lowered in ("auto", "off") or lowered.isdigit():
            return QValidator.State.Acceptable
        if "auto".startswith(lowered) or "off".startswith(lowered):
            return QValidator.State.Intermediate
        return QValidator.State.Invalid


class OptionsPanel(QScrollArea):
    """The left column: training mode, LoRA, real-training fields, export and output folder."""

    changed = Signal()
    lora_targets_wanted = Signal(str)  # base model whose LoRA module names to list

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("optionsPanel")
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(10)
        layout.addWidget(self._build_training_group())
        layout.addWidget(self._build_lora_group())
        layout.addWidget(self._build_real_group())
        layout.addWidget(self._build_export_group())
        layout.addWidget(self._build_output_group())
        layout.addStretch(1)
        self.setWidget(body)
        # As wide as the widest row (the horizontal scroll bar is off: a narrower column would cut
        # the rows' right ends off).
        self.setMinimumWidth(max(300, body.minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width()
                                 + 2 * self.frameWidth()))
        for check in self.findChildren(QCheckBox):
            check.toggled.connect(self._emit_changed)
        for spin in self.findChildren(QSpinBox) + self.findChildren(QDoubleSpinBox):
            spin.valueChanged.connect(self._emit_changed)
        for edit in (self.lora_modules, self.output_dir, self.eval_data):
            edit.textChanged.connect(self._emit_changed)
        self.base_model.currentTextChanged.connect(self._emit_changed)
        for combo in (self.device, self.precision, self.loss_on):
            combo.currentTextChanged.connect(self._emit_changed)
        self.lora_suggestions: LoraModules | None = None  # the last LoraTargetsWorker result
        self._targets_pending = ""
        self._targets_timer = QTimer(self)
        self._targets_timer.setSingleShot(True)
        self._targets_timer.setInterval(400)
        self._targets_timer.timeout.connect(self._want_targets)
        self.base_model.currentTextChanged.connect(self._on_base_model_changed)
        self.changed.connect(self.update_recipe)
        self._update_enabled()

    # --- construction ---
    def _build_training_group(self) -> QGroupBox:
        group = QGroupBox("Training")
        form = QVBoxLayout(group)
        self.dry_run = _check(
            "Dry run: check the pipeline in a second",
            "dryRunCheck",
            "Dry run: scan the dataset and write a placeholder model and service (as TinyForgeAI does), without training. "
            "Checks the whole pipeline in about a second.",
            checked=True,
        )
        self.dry_run.toggled.connect(self._update_enabled)
        self.dry_run.toggled.connect(self._on_dry_run_toggled)
        self.dry_run.toggled.connect(self._on_base_model_changed)
        form.addWidget(self.dry_run)
        return group

    def _build_lora_group(self) -> QGroupBox:
        group = QGroupBox("LoRA adapter")
        form = QFormLayout(group)
        self.lora = _check("Use LoRA", "loraCheck", "Train a low-rank adapter instead of every weight (PEFT LoRA).")
        self.lora.toggled.connect(self._update_enabled)
        self.lora.toggled.connect(self._on_base_model_changed)
        self.lora_rank = _auto_spin(512, "loraRankSpin", "LoRA rank r. The low-rank dimension; auto: 16 for a real "
                                    "run (the recipe), TinyForgeAI's 8 for a dry run.")
        self.lora_alpha = _auto_spin(4096, "loraAlphaSpin", "LoRA alpha. Scaling factor; auto: 2 x rank for a real "
                                     "run, TinyForgeAI's 16 for a dry run.")
        self.lora_modules = QLineEdit("")
        self.lora_modules.setObjectName("loraModulesEdit")
        self.lora_modules.setToolTip(
            "Target modules, comma-separated. Empty: every linear projection for a real run (the recipe), "
            "TinyForgeAI's q,v for a dry run."
        )
        self.lora_modules.setAccessibleName("LoRA target modules")
        self.lora_modules.setPlaceholderText("auto: every linear projection")
        self.lora_menu = QMenu(self)
        self.lora_menu.setObjectName("loraTargetsMenu")
        self.lora_menu.aboutToShow.connect(self._fill_lora_menu)
        self.lora_suggest = QToolButton()
        self.lora_suggest.setObjectName("loraSuggestButton")
        self.lora_suggest.setText("▾")
        self.lora_suggest.setToolTip("Pick target modules from the base model's linear layers")
        self.lora_suggest.setAccessibleName("Suggest LoRA target modules")
        self.lora_suggest.setMenu(self.lora_menu)
        self.lora_suggest.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.lora_model = QStringListModel(self)
        completer = ModuleListCompleter(self.lora_model, self)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        self.lora_modules.setCompleter(completer)
        modules_row = QHBoxLayout()
        modules_row.addWidget(self.lora_modules, 1)
        modules_row.addWidget(self.lora_suggest)
        self.lora_hint = QLabel("")
        self.lora_hint.setObjectName("loraHint")
        self.lora_hint.setWordWrap(True)
        style_label(self.lora_hint, "dim")
        form.addRow(self.lora)
        form.addRow("Rank (r)", self.lora_rank)
        form.addRow("Alpha", self.lora_alpha)
        form.addRow("Target modules", modules_row)
        form.addRow(self.lora_hint)
        return group

    def _build_real_group(self) -> QGroupBox:
        group = QGroupBox("Real training")
        group.setObjectName("realGroup")
        self.real_group = group
        form = QFormLayout(group)
        self.base_model = QComboBox()
        self.base_model.setObjectName("baseModelCombo")
        self.base_model.setEditable(True)
        # The registry (and its imports) load after the first paint: see refresh_models().
        for name, description in FALLBACK_MODELS.items():
            self.base_model.addItem(name)
            self.base_model.setItemData(self.base_model.count() - 1, description, Qt.ItemDataRole.ToolTipRole)
        self.base_model.setToolTip("Base model: a built-in name, a Hugging Face hub id already cached, or a local folder.")
        self.base_model.lineEdit().setPlaceholderText("name, owner/model hub id, or a folder")
        self.base_model.setAccessibleName("Base model")
        form.addRow("Base model", _with_browse(self.base_model, "baseModelBrowse",
                                               "Choose a local model folder (Hugging Face format)", self._browse_model))
        # The form's defaults and lower limits are TrainConfig's (core.options_defaults);
        # the upper limits are the form's own (the config has none). "auto" is the config's None.
        self.epochs = _dspin(_lowest(defaults.EPOCHS), 1000, _lowest(defaults.EPOCHS), 1, 0.5, "epochsSpin",
                             "Epochs. Passes over the training data; auto: at least 40 optimizer steps in all.")
        self.epochs.setSpecialValueText("auto")
        self.learning_rate = _dspin(_lowest(defaults.LEARNING_RATE), 1.0, _lowest(defaults.LEARNING_RATE), 6, 1e-5,
                                    "learningRateSpin",
                                    "Learning rate. Step size of the optimizer; auto: 2e-3 with LoRA, 1e-4 for "
                                    "full fine-tuning.")
        self.learning_rate.setSpecialValueText("auto")
        self.batch_size = _spin(int(_lowest(defaults.BATCH_SIZE)), 4096, defaults.BATCH_SIZE.default, "batchSizeSpin",
                                "Batch size. Examples per optimizer step.")
        self.max_length = _spin(int(_lowest(defaults.MAX_LENGTH)), 32768, defaults.MAX_LENGTH.default,
                                "maxLengthSpin", "Max length. Tokens per example after truncation.")
        auto_split = _lowest(defaults.EVAL_SPLIT) - 0.05  # one step below the smallest fraction: auto
        self.eval_split = _dspin(auto_split, 0.9, auto_split, 2, 0.05, "evalSplitSpin",
                                 "Eval split. Held out to check questions asked in other words; auto: one phrasing "
                                 "of each fact (without variants: 0.1 of the records with 10+).")
        self.eval_split.setSpecialValueText("auto")
        self.seed = _spin(0, 2**31 - 1, defaults.SEED.default, "seedSpin", "Seed. Makes a run reproducible.")
        form.addRow("Epochs", self.epochs)
        form.addRow("Learning rate", self.learning_rate)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Max length", self.max_length)
        self.loss_on = QComboBox()
        self.loss_on.setObjectName("lossOnCombo")
        for key, text in LOSS_ON.items():
            self.loss_on.addItem(text, key)
        self.loss_on.setToolTip("Train on: which answers of a conversation carry the loss. Every answer (each "
                                "assistant turn is learned), or only the last (earlier turns are context). "
                                "Rows with one question and one answer train the same either way.")
        self.loss_on.setAccessibleName("Train on")
        form.addRow("Train on", self.loss_on)
        self.device = _combo(DEVICES, "deviceCombo", "Device. Where the training runs.")
        self.precision = _combo(PRECISIONS, "precisionCombo", "Precision. Number format of the training.")
        self.device.setCurrentText(defaults.DEVICE.default)
        self.precision.setCurrentText(defaults.PRECISION.default)
        self.recipe_label = QLabel("")
        self.recipe_label.setObjectName("recipeLabel")
        self.recipe_label.setWordWrap(True)
        self.recipe_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        style_label(self.recipe_label, "dim")
        form.addRow("Eval split", self.eval_split)
        self.variants = VariantsSpin()
        self.variants.setRange(-1, int(defaults.VARIANTS.lt) - 1)
        self.variants.setValue(-1)
        self.variants.setObjectName("variantsSpin")
        self.variants.setToolTip("Question variants. Before training, a local model writes this many rephrasings of "
                                 "each question (besides cheap surface variants), so the model answers customers "
                                 "who ask in their own words; auto: 4, off: your records only.")
        self.variants.setAccessibleName("Question variants")
        form.addRow("Variants", self.variants)
        self.eval_data = QLineEdit()
        self.eval_data.setObjectName("evalDataEdit")
        self.eval_data.setPlaceholderText("optional: test questions")  # fits the default width; the tooltip says more
        self.eval_data.setToolTip("Evaluation file (JSONL, optional). Questions asked the way your customers ask them, with the "
                                  "answers you expect; scored after training beside the base model.")
        self.eval_data.setAccessibleName("Evaluation file")
        form.addRow("Eval file", _with_browse(self.eval_data, "evalDataBrowse", "Choose an evaluation file (JSONL)",
                                              self._browse_eval_data))
        form.addRow("Seed", self.seed)
        form.addRow("Device", self.device)
        form.addRow("Precision", self.precision)
        form.addRow(self.recipe_label)
        return group

    def _build_export_group(self) -> QGroupBox:
        group = QGroupBox("Export")
        form = QVBoxLayout(group)
        self.export_onnx = _check("Export ONNX", "exportOnnxCheck", "Export the model to ONNX (fp32) next to the service.")
        self.quantize = _check("Quantize (serve the fastest that answers the same)", "quantizeCheck",
                               "Also build int8 and int4 graphs, check each against the trained model, and serve "
                               "the fastest one that answers the same (else fp32).", checked=True)
        self.gguf = _check("GGUF for Ollama / llama.cpp", "ggufCheck",
                           "Also write GGUF files (F16, Q8_0, Q4_0) and an Ollama Modelfile, each checked against "
                           "the trained model; the smallest that answers the same is recommended.")
        self.overwrite = _check(
            "Overwrite existing service", "overwriteCheck", "Replace an existing service/ folder when re-exporting a run."
        )
        self.export_onnx.toggled.connect(self._update_enabled)
        for box in (self.export_onnx, self.quantize, self.gguf, self.overwrite):
            form.addWidget(box)
        return group

    def _build_output_group(self) -> QGroupBox:
        group = QGroupBox("Output folder")
        row = QHBoxLayout(group)
        self.output_dir = QLineEdit(default_output_root())
        self.output_dir.setObjectName("outputDirEdit")
        self.output_dir.setToolTip("Every run gets its own folder in here (run.json, events.jsonl, model/, service/).")
        self.output_dir.setAccessibleName("Output folder")
        browse = QToolButton()
        browse.setObjectName("outputDirBrowse")
        browse.setIcon(make_icon("folder"))
        browse.setText("Browse…")
        browse.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        browse.setToolTip("Choose the folder that holds the runs")
        browse.setAccessibleName("Browse for the output folder")
        browse.clicked.connect(self._browse_output)
        row.addWidget(self.output_dir, 1)
        row.addWidget(browse)
        return group

    # --- behaviour ---
    @Slot()
    def _emit_changed(self, *_: object) -> None:
        self.changed.emit()

    @Slot()
    def _update_enabled(self, *_: object) -> None:
        real = not self.dry_run.isChecked()
        self.real_group.setEnabled(real)
        self.real_group.setTitle("Real training" if real else "Real training (off in dry run)")
        lora = self.lora.isChecked()
        for w in (self.lora_rank, self.lora_alpha, self.lora_modules, self.lora_suggest):
            w.setEnabled(lora)
        self.quantize.setEnabled(self.export_onnx.isChecked())
        self.gguf.setEnabled(real)  # a dry run's stub has no weights to write

    @Slot(bool)
    def _on_dry_run_toggled(self, dry: bool) -> None:
        """A dry run's q,v (TinyForgeAI's default) are T5 names; a real run starts from the model's own default."""
        if not dry and self.lora_modules.text().replace(" ", "") == "q,v":
            self.lora_modules.setText("")

    # --- LoRA target suggestions (listed by a worker; see MainWindow) ---
    @Slot()
    def _on_base_model_changed(self, *_: object) -> None:
        self._targets_timer.start()

    @Slot()
    def _want_targets(self, force: bool = False) -> None:
        """List the module names (a worker reads config.json, no torch) when they matter: for real
        LoRA training, or when the menu opens."""
        name = self.base_model.currentText().strip()
        if not force and not self.isVisible():  # a hidden or closed window lists nothing
            return
        if not (force or (self.lora.isChecked() and not self.dry_run.isChecked())):
            if not self._targets_pending and self._suggested_for() != name:
                self.lora_hint.setText("")
            return
        if name and name not in (self._suggested_for(), self._targets_pending):
            self._targets_pending = name
            self.lora_hint.setText(f"Reading the module names of {name}…")
            self.lora_targets_wanted.emit(name)

    def request_targets(self) -> None:
        """Ask for the current base model's module names (once the window is shown)."""
        self._want_targets()

    def _suggested_for(self) -> str | None:
        """The base model the suggestions are for (None before the first answer)."""
        return None if self.lora_suggestions is None else self.lora_suggestions.base_model

    def set_lora_suggestions(self, result: LoraModules) -> None:
        """``result`` from ``LoraTargetsWorker``: the modules and default targets of its base model."""
        self._targets_pending = ""
        if result.base_model != self.base_model.currentText().strip():
            self.lora_hint.setText("")
            self._want_targets()  # the user picked another model meanwhile
            return
        self.lora_suggestions = result
        modules, default = list(result.modules), list(result.default)
        self.lora_model.setStringList(modules)
        self.lora_modules.setPlaceholderText(f"auto: all {len(default)} linear projections" if default
                                             else "auto: every linear projection")
        if result.unknown_reason:
            # Not read without loading the model; training checks typed names and lists those that exist.
            self.lora_hint.setText(f"Module names of {result.base_model} unknown until training "
                                   f"({result.unknown_reason}); auto trains every linear projection")
        else:
            self.lora_hint.setText(f"{len(modules)} module names in {result.base_model}; auto trains "
                                   f"{','.join(default) or '-'} (pick others with ▾)")
        self.update_recipe()

    def lora_targets_failed(self, base_model: str, message: str) -> None:
        from core.models.lora_modules import LoraModules

        self._targets_pending = ""
        if base_model == self.base_model.currentText().strip():
            self.lora_suggestions = LoraModules(base_model, "", "")  # no names, no reason: "No modules found"
            self.lora_model.setStringList([])
            self.lora_hint.setText(f"Cannot list the modules: {message}")

    def suggested_modules(self) -> list[str]:
        return list(self.lora_model.stringList())

    @Slot()
    def _fill_lora_menu(self) -> None:
        self._want_targets(force=True)
        self.lora_menu.clear()
        modules = self.suggested_modules()
        if not modules:
            waiting = QAction("Reading the model's modules…" if self.lora_suggestions is None else
                              "Module names unknown until training" if self.lora_suggestions.unknown_reason
                              else "No modules found",
                              self.lora_menu)
            waiting.setEnabled(False)
            self.lora_menu.addAction(waiting)
            return
        chosen = set(self.lora_targets() or [])
        for name in modules:
            action = QAction(name, self.lora_menu)
            action.setCheckable(True)
            action.setChecked(name in chosen)
            action.toggled.connect(self._on_lora_module_toggled)
            self.lora_menu.addAction(action)
        self.lora_menu.addSeparator()
        reset = QAction("Auto: every linear projection", self.lora_menu)
        reset.triggered.connect(self.lora_modules.clear)
        self.lora_menu.addAction(reset)

    @Slot(bool)
    def _on_lora_module_toggled(self, checked: bool) -> None:
        action = self.sender()
        if not isinstance(action, QAction):
            return
        names = self.lora_targets() or []
        name = action.text()
        if checked and name not in names:
            names.append(name)
        elif not checked and name in names:
            names.remove(name)
        self.lora_modules.setText(",".join(names))

    @Slot()
    def _browse_output(self) -> None:
        from PySide6.QtWidgets import QFileDialog  # not at import: start-up never opens it

        folder = QFileDialog.getExistingDirectory(self, "Choose the output folder", self.output_dir.text())
        if folder:
            self.output_dir.setText(folder)

    @Slot()
    def _browse_eval_data(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self, "Choose an evaluation file", "", "JSON Lines (*.jsonl);;All files (*)")
        if path:
            self.eval_data.setText(path)

    def _browse_model(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        folder = QFileDialog.getExistingDirectory(self, "Choose a model folder (Hugging Face format)")
        if folder:
            self.base_model.setCurrentText(folder)

    def refresh_models(self) -> None:
        """Add the registry's base models and descriptions (called once the window is shown)."""
        current = self.base_model.currentText()
        for name, description in builtin_models().items():
            row = self.base_model.findText(name)
            if row < 0:
                self.base_model.addItem(name)
                row = self.base_model.count() - 1
            self.base_model.setItemData(row, description, Qt.ItemDataRole.ToolTipRole)
        self.base_model.setCurrentText(current)

    def apply_first_run_defaults(self) -> None:
        """What a newcomer came for: with the offline starter model at hand, a real LoRA run with
        the recipe and an ONNX export. The dry run stays one click away."""
        from core.models.starter import starter_available

        if starter_available():
            # Quietly: the module listing for LoRA starts once the window is shown, not from here.
            for box, checked in ((self.dry_run, False), (self.lora, True), (self.export_onnx, True)):
                with QSignalBlocker(box):
                    box.setChecked(checked)
            self._update_enabled()

    # --- the recipe (what "auto" resolves to) ---
    def set_dataset_size(self, n_records: int | None) -> None:
        """The valid records of the loaded dataset: the recipe depends on them."""
        self._n_records = n_records
        self.update_recipe()

    @Slot()
    def update_recipe(self, *_: object) -> None:
        """Show what a real run will use for every "auto" value, and why (pure Python, no torch)."""
        n_records = getattr(self, "_n_records", None)
        if self.dry_run.isChecked() or not n_records:
            self.recipe_label.setText("" if self.dry_run.isChecked() else
                                      "Auto values are chosen from the dataset once it is loaded.")
            return
        from core.training.config import TrainConfig
        from core.training.estimate import project_steps
        from core.training.recipe import choose_recipe

        try:
            config = TrainConfig(data_path="-", output_dir="-", **self.to_dict()["train"])
        except ValueError as exc:
            self.recipe_label.setText(f"Options not valid: {exc}")
            return
        n_train = project_steps(config, n_records).n_train
        targets = list(self.lora_suggestions.default) if self.lora_suggestions is not None else []
        recipe = choose_recipe(config, n_train, targets or None)
        summary = recipe.summary().removeprefix("recipe: ")
        if config.lora.enabled and config.lora.target_modules is None and not targets:
            summary += "; LoRA targets every linear projection"
        if config.variants == 0:
            data = f"{n_train} training records"
        else:
            data = f"{n_records} questions with variants (about {n_train} phrasings; one of each held out)"
        self.recipe_label.setText(f"Recipe for {data}, {recipe.total_steps} steps (fewer when the held-out "
                                  f"loss stops improving): {summary}" if config.variants != 0 else
                                  f"Recipe for {data}, {recipe.total_steps} steps: {summary}")

    # --- data ---
    def output_root(self) -> str:
        return self.output_dir.text().strip() or default_output_root()

    def lora_targets(self) -> list[str] | None:
        names = [n.strip() for n in self.lora_modules.text().split(",") if n.strip()]
        return names or None

    def to_dict(self) -> dict[str, Any]:
        """Options as plain data: {"train": {...TrainConfig fields}, "export": {...}, "output_root"}."""
        eval_split = self.eval_split.value()
        return {
            "train": {
                "dry_run": self.dry_run.isChecked(),
                "base_model": self.base_model.currentText().strip() or defaults.DEFAULT_BASE_MODEL,
                "lora": {
                    "enabled": self.lora.isChecked(),
                    "r": self.lora_rank.value() or None,
                    "alpha": self.lora_alpha.value() or None,
                    "target_modules": self.lora_targets(),
                },
                "epochs": _auto(round(self.epochs.value(), 3)),
                "learning_rate": _auto(self.learning_rate.value()),
                "batch_size": self.batch_size.value(),
                "max_length": self.max_length.value(),
                "loss_on": str(self.loss_on.currentData() or "all"),
                "eval_split": None if eval_split < 0 else round(eval_split, 3),
                "variants": None if self.variants.value() < 0 else self.variants.value(),
                "eval_data_path": self.eval_data.text().strip() or None,
                "seed": self.seed.value(),
                "device": self.device.currentText(),
                "precision": self.precision.currentText(),
            },
            "export": {
                "export_onnx": self.export_onnx.isChecked(),
                "quantize": "int8" if self.quantize.isChecked() else "none",
                "gguf": self.gguf.isChecked() and not self.dry_run.isChecked(),
                "overwrite": self.overwrite.isChecked(),
            },
            "output_root": self.output_root(),
        }

    def load_dict(self, data: dict[str, Any]) -> None:
        """Fill the widgets from :meth:`to_dict` output or a run.json ``options`` (unknown keys ignored)."""
        train = data.get("train") or {}
        export = data.get("export") or {}
        lora = train.get("lora") or {}
        try:
            if "dry_run" in train:
                self.dry_run.setChecked(bool(train["dry_run"]))
            if "base_model" in train:
                self.base_model.setCurrentText(str(train["base_model"]))
            if "enabled" in lora:
                self.lora.setChecked(bool(lora["enabled"]))
            if "r" in lora:
                self.lora_rank.setValue(int(lora["r"] or 0))
            if "alpha" in lora:
                self.lora_alpha.setValue(int(round(float(lora["alpha"] or 0))))
            if "target_modules" in lora:
                self.lora_modules.setText(",".join(lora["target_modules"] or []))
            for key, box in (("epochs", self.epochs), ("learning_rate", self.learning_rate)):
                if key in train:
                    box.setValue(float(train[key] or 0))
            for key, ibox in (("batch_size", self.batch_size), ("max_length", self.max_length), ("seed", self.seed)):
                if key in train:
                    ibox.setValue(int(train[key]))
            for key, combo in (("device", self.device), ("precision", self.precision)):
                if key in train and combo.findText(str(train[key])) >= 0:
                    combo.setCurrentText(str(train[key]))
            if "loss_on" in train and self.loss_on.findData(str(train["loss_on"])) >= 0:
                self.loss_on.setCurrentIndex(self.loss_on.findData(str(train["loss_on"])))
            if "variants" in train:
                value = train["variants"]
                self.variants.setValue(-1 if value is None else int(value))
            if "eval_data_path" in train:
                self.eval_data.setText(str(train["eval_data_path"] or ""))
            if "eval_split" in train:
                value = train["eval_split"]
                self.eval_split.setValue(self.eval_split.minimum() if value is None else float(value))
            if "export_onnx" in export:
                self.export_onnx.setChecked(bool(export["export_onnx"]))
            if "quantize" in export:
                self.quantize.setChecked(export["quantize"] not in (None, "none"))
            if "gguf" in export:
                self.gguf.setChecked(bool(export["gguf"]))
            if "overwrite" in export:
                self.overwrite.setChecked(bool(export["overwrite"]))
            if data.get("output_root"):
                self.output_dir.setText(str(data["output_root"]))
        except (TypeError, ValueError) as exc:
            logger.warning("could not load options: %s", exc)
        self._update_enabled()

