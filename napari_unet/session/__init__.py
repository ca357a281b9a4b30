"""The on-disk annotation session: images, corrections, reviewed regions and model versions.

Pure Python (numpy, tifffile, json): no napari, Qt or torch at import, so the napari widgets, the
CLI and the fine-tune process (which reads its training data from here) all share it.

Folder layout::

    <session>/
      session.json                       the index (see ``index``), written last, atomically
      .lock                              writer lock (napari and the trainer both write)
      images/<id>.tif                    copies of images that have no file (samples, plugins)
      labels/<id>/<slice>-<n>.npz        current labels of one 2-D slice
      reviewed/<id>/<slice>-<n>.npz      reviewed mask (bool) of one slice
      snapshots/<id>/<slice>-<n>.npz     the model's prediction, to tell edits apart
      models/<name>.pt                   model versions (checkpoints), registered in the index
      runs/<run id>/latest.pt            a trainer's run (only the newest is kept, for resuming)

Images with a file (TIFF/PNG, or a ``.zarr`` folder, which is read lazily) are referenced by
absolute path and only ever read. Every path in the index is checked: data paths must stay inside
their sub-folder (no ``..``, no absolute path, no symbolic link leading out), sources must be
TIFF/PNG files or ``.zarr`` folders — a session received from someone else cannot make napari
read or write elsewhere (:class:`SessionError` names the bad entry).

Crash safety: a save writes new files under never-used names (``<n>`` counts up), then replaces
``session.json`` atomically, then deletes the files it replaced. Killed at any instant, the
session opens at the last completed save; leftovers are removed when it is next opened for
writing — only files named the way the session names them, each removal logged; any other file
in the folder is left alone (:mod:`~napari_unet.session.reclaim`). A full or read-only disk
raises :class:`SessionWriteError` and changes nothing. Two programs may write one session:
a save over a slice that the other one changed meanwhile is refused
(:class:`SessionConflictError`), and a session locked by a program busy writing says so at once
(:class:`SessionBusyError`, naming the process).

Slices: a 2-D image has slice 0; a stack (axes with ``T``/``Z``/``S``) has one slice per
position of its flattened stack axes (``core.io.axes.to_stack``). Per slice the index keeps a status
(``unlabelled`` < ``predicted`` < ``edited`` < ``reviewed``), the model version of the snapshot,
time stamps, and edit counts (pixels changed, objects touched, reviewed and annotated pixels).
Accounting rounds (time correcting, pixels/objects edited) close when a model version is added.

Example:
    >>> session = Session.create(folder, name="nuclei")  # doctest: +SKIP
    >>> image_id = session.add_image("a", axes="YX", source="/data/a.tif")  # doctest: +SKIP
    >>> session.save_slice(image_id, 0, labels=labels, snapshot=prediction)  # doctest: +SKIP
    >>> Session.open(folder, readonly=True).training_items()  # doctest: +SKIP
"""

from napari_unet.session.entries import ImageEntry, SliceData, SliceEntry, VersionEntry
from napari_unet.session.errors import (
    SessionBusyError,
    SessionConflictError,
    SessionError,
    SessionWriteError,
)
from napari_unet.session.paths import default_session_folder, user_sessions_dir
from napari_unet.session.session import Session
from napari_unet.session.tracking import (
    STATUSES,
    annotated_mask,
    changed_mask,
    edit_stats,
    slice_status,
    touched_ids,
)
from napari_unet.session.training import TrainingSlice

__all__ = [
    "STATUSES",
    "ImageEntry",
    "Session",
    "SessionBusyError",
    "SessionConflictError",
    "SessionError",
    "SessionWriteError",
    "SliceData",
    "SliceEntry",
    "TrainingSlice",
    "VersionEntry",
    "annotated_mask",
    "changed_mask",
    "default_session_folder",
    "edit_stats",
    "slice_status",
    "touched_ids",
    "user_sessions_dir",
]
