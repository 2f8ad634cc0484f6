"""The studio: image generation for signed-in users, and their gallery.

flow.py         `Studio` and the generation flow (validate → moderate → limits → hold → engine →
                post-process → store → capture), with the steps that write
previews.py     partial frames as small WebP previews, kept in memory a few minutes for their owner
postprocess.py  decoding, fitting and encoding the image (PNG, WebP, thumbnail) in a worker thread
limits.py       per-user limits: generations at once, and per minute
gallery.py      the user's stored images (gallery, get, delete, open_image)
recovery.py     settling what a dead process left pending, and `is_stored` for the sweep
types.py        GenerationRequest, GenerationResult, GalleryPage, GalleryImage (a stored image as a reference)
"""

from services.studio.flow import NOT_CHARGED, Studio
from services.studio.postprocess import postprocess
from services.studio.previews import Preview
from services.studio.types import GalleryImage, GalleryPage, GenerationRequest, GenerationResult

__all__ = ["NOT_CHARGED", "GalleryImage", "GalleryPage", "GenerationRequest", "GenerationResult", "Preview", "Studio",
           "postprocess"]
