"""What one image becomes: its status words. Every layer above reads them from here."""

from __future__ import annotations

OK = "ok"  #: a face was found and embedded
NO_FACE = "no_face"  #: no face was found; features come from the whole image
USABLE = (OK, NO_FACE)  #: statuses whose features can be reduced and clustered
