"""The tab widget on the right: the Dataset tab at once, the result tabs when first needed.

Artifacts, Evaluation, Export and Playground are not needed for the first paint, so start-up
neither imports nor builds them (about a sixth of the window's start-up time): their pages are
empty placeholders until :meth:`StudioTabs.build_result_tabs` runs (after the first paint, or as
soon as anything asks for one of them through the properties below).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QTimer, Signal, Slot
from PySide6.QtWidgets import QTabWidget, QWidget

from tinyforge_gui.widgets.common import make_icon

if TYPE_CHECKING:
    from tinyforge_gui.panels.artifacts_panel import ArtifactsPanel
    from tinyforge_gui.panels.dataset_panel import DatasetPanel
    from tinyforge_gui.panels.evaluation_panel import EvaluationPanel
    from tinyforge_gui.panels.export_panel import ExportPanel
    from tinyforge_gui.panels.playground_panel import PlaygroundPanel

RESULT_TABS = (("folder", "Artifacts"), ("ok", "Evaluation"), ("export", "Export"), ("train", "Playground"))


class StudioTabs(QTabWidget):
    """Dataset, Artifacts, Evaluation, Export and Playground; the last four built lazily."""

    result_tabs_built = Signal()  # once: connect the result panels' signals now

    def __init__(self, dataset: DatasetPanel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("mainTabs")
        self.setDocumentMode(True)
        self.dataset = dataset
        self._artifacts: ArtifactsPanel | None = None
        self._export_panel: ExportPanel | None = None
        self._playground: PlaygroundPanel | None = None
        self._evaluation: EvaluationPanel | None = None
        self.addTab(dataset, make_icon("dataset"), "Dataset")
        for icon, label in RESULT_TABS:
            self.addTab(QWidget(), make_icon(icon), label)
        self.currentChanged.connect(self._on_tab_changed)

    @property
    def built(self) -> bool:
        return self._artifacts is not None

    def build_result_tabs(self) -> None:
        """Build the four result panels and put them in their tabs (once)."""
        if self._artifacts is not None:
            return
        from tinyforge_gui.panels.artifacts_panel import ArtifactsPanel
        from tinyforge_gui.panels.evaluation_panel import EvaluationPanel
        from tinyforge_gui.panels.export_panel import ExportPanel
        from tinyforge_gui.panels.playground_panel import PlaygroundPanel

        self._artifacts = ArtifactsPanel()
        self._evaluation = EvaluationPanel()
        self._export_panel = ExportPanel()
        self._playground = PlaygroundPanel()
        current = self.currentIndex()
        self.blockSignals(True)  # swapping pages is not the user changing tabs
        panels = (self._artifacts, self._evaluation, self._export_panel, self._playground)
        for index, panel in enumerate(panels, start=1):
            placeholder = self.widget(index)
            icon, label = RESULT_TABS[index - 1]
            self.removeTab(index)
            self.insertTab(index, panel, make_icon(icon), label)
            placeholder.deleteLater()
        self.setCurrentIndex(current)
        self.blockSignals(False)
        self.result_tabs_built.emit()

    @Slot(int)
    def _on_tab_changed(self, index: int) -> None:
        if index > 0 and self._artifacts is None:
            QTimer.singleShot(0, self.build_result_tabs)  # not inside the tab bar's own signal

    @property
    def artifacts(self) -> ArtifactsPanel:
        self.build_result_tabs()
        assert self._artifacts is not None
        return self._artifacts

    @property
    def evaluation(self) -> EvaluationPanel:
        self.build_result_tabs()
        assert self._evaluation is not None
        return self._evaluation

    @property
    def export_panel(self) -> ExportPanel:
        self.build_result_tabs()
        assert self._export_panel is not None
        return self._export_panel

    @property
    def playground(self) -> PlaygroundPanel:
        self.build_result_tabs()
        assert self._playground is not None
        return self._playground

    def selected_run(self) -> str:
        """The run selected in the Artifacts tab ("" before that tab exists: nothing is selected)."""
        return self._artifacts.selected_run() if self._artifacts is not None else ""
