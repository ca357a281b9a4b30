"""Tables that fit their dock: short columns sized to their contents, text columns share the rest.

A dock is ~320 px wide; a table whose columns are all sized to their contents grows wider than
that and cuts its last columns off behind a scrollbar. :func:`fit_columns` makes the text
columns stretch and elide instead (every cell's tooltip holds its full text).
"""

from __future__ import annotations

from collections.abc import Iterable

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QHeaderView, QTableWidget


def fit_columns(table: QTableWidget, stretch: Iterable[int]) -> None:
    """Size ``table``'s columns to fit its width: ``stretch`` columns share the space left.

    Args:
        table: the table (its headers already set).
        stretch: indices of the text columns that stretch and elide; the others are sized to
            their contents.
    """
    stretch = set(stretch)
    header = table.horizontalHeader()
    header.setMinimumSectionSize(24)
    for column in range(table.columnCount()):
        mode = (
            QHeaderView.ResizeMode.Stretch
            if column in stretch
            else (QHeaderView.ResizeMode.ResizeToContents)
        )
        header.setSectionResizeMode(column, mode)
    header.setStretchLastSection(False)
    table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
    table.setWordWrap(False)
    table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
