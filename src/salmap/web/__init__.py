"""The web page and JSON API behind ``salmap serve``.

>>> from salmap.web import create_app
>>> app = create_app()            # the embedded EfficientNet-Lite0, loaded now
>>> # uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from salmap.web.app import create_app
from salmap.web.uploads import Limits

__all__ = ["create_app", "Limits"]
