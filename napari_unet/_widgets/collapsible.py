"""A collapsible "Advanced" form section: a toggle header with an arrow and a hidden form."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFormLayout, QHBoxLayout, QToolButton, QVBoxLayout, QWidget


class CollapsibleForm(QWidget):
    """A titled toggle button; clicking it shows or hides a form of rows (hidden at first).

    Attributes:
        toggle: the header button (checkable; checked = shown).
        content: the widget holding the rows.
    """

    def __init__(self, title: str = "Advanced", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.toggle = QToolButton()
        self.toggle.setText(title)
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setAutoRaise(True)
        self.content = QWidget()
        self.rows = QFormLayout(self.content)
        self.rows.setContentsMargins(12, 0, 0, 0)
        self.rows.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.content.setVisible(False)
        header = QHBoxLayout()
        header.addWidget(self.toggle)
        header.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(self.content)
        self.toggle.toggled.connect(self.set_expanded)

    def add_row(self, label: str, widget: QWidget) -> None:
        """Append ``widget`` with ``label`` (empty for a checkbox that labels itself)."""
        self.rows.addRow(label, widget)

    def set_expanded(self, shown: bool) -> None:
        """Show or hide the rows (and turn the arrow)."""
        self.content.setVisible(shown)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        if self.toggle.isChecked() != shown:
            self.toggle.setChecked(shown)
