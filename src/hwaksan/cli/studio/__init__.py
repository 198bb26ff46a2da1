"""``hwaksan studio``: a local web page to sample, inpaint and edit with trained models.

Every run of the studio is a ``hwaksan`` command: the request becomes the argv of
``hwaksan sample|inpaint|edit``, parsed by those commands' own parsers, and runs the same
computation (:func:`hwaksan.cli.sample.sample_images` and its siblings), so the command the studio
shows reproduces its result bit for bit.

- :mod:`.commands`: a request body -> the checked, parsed command;
- :mod:`.execute`: a command run with a streaming callback -> the run's events;
- :mod:`.worker`, :mod:`.runs`: one worker thread per model, the bounded store of runs;
- :mod:`.service`: the studio without HTTP; :mod:`.app`: the HTTP API (Starlette);
- :mod:`.models`, :mod:`.pictures`, :mod:`.limits`, :mod:`.errors`: what they name.

The page itself is the files of ``static/``.
"""

from .app import STATIC, create_app
from .limits import Limits
from .models import ServedModel, served_name
from .service import Studio

__all__ = ["create_app", "STATIC", "Limits", "ServedModel", "served_name", "Studio"]
