"""The Krita front end: a Krita Python plugin (``latent_studio_krita/`` and its ``.desktop`` file, the two
things copied into Krita's ``pykrita`` folder) and the commands that install it and test it inside Krita
headless (:mod:`krita_plugin.commands`).

Inside Krita the plugin package is imported on its own, as ``latent_studio_krita``: it imports its own
modules relatively and Latent Studio's packages (``operations``, ``backend``, ``remote``) by name once
:mod:`latent_studio_krita.environment` has put the recorded environment on ``sys.path``. Its Qt is Krita's
(PyQt5 or PyQt6) through ``latent_studio_krita/qt.py``, never PySide6; it never imports the studio.
"""
