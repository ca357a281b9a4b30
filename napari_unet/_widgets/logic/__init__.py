"""Qt-free decisions of the widgets, tested with ``napari.components.ViewerModel`` (no window).

- :mod:`.layer_choice`: which labels layer the correction tools follow, which one a session
  links and the image it belongs to;
- :mod:`.guidance`: which model(s) the uncertainty is measured with, what can be reused;
- :mod:`.slice_status`: each slice's review status and the summary line;
- :mod:`.refresh`: which slices a refresh with a new model version re-predicts (in which
  runs, the slice on screen first);
- :mod:`.protect`: what a new prediction keeps of the user's work in a slice, and how it is
  merged around it (ids unique, kept pixels identical).
- :mod:`.start_choice`: the Fine-tune dock's start model for the labels, its learning rate and
  the line that says why.

Nothing here imports Qt; napari is imported only inside functions that check layer types.
"""

from napari_unet._widgets.logic.guidance import models_to_measure, reusable_probability
from napari_unet._widgets.logic.layer_choice import (
    CORRECTABLE_ROLES,
    correctable_labels,
    default_labels,
    image_of,
    labels_to_follow,
    labels_to_link,
)
from napari_unet._widgets.logic.refresh import (
    PROTECTED_STATUSES,
    refresh_runs,
    session_protected,
)
from napari_unet._widgets.logic.slice_status import SliceStatusCache, summary_text

__all__ = [
    "CORRECTABLE_ROLES",
    "PROTECTED_STATUSES",
    "SliceStatusCache",
    "correctable_labels",
    "default_labels",
    "image_of",
    "labels_to_follow",
    "labels_to_link",
    "models_to_measure",
    "refresh_runs",
    "reusable_probability",
    "session_protected",
    "summary_text",
]
