"""Latent Studio inside Krita: a docker that inpaints the selection, outpaints the canvas Krita's Resize
Canvas extended, makes variations of the active layer and upscales the image, with Latent Studio's engine
in Krita's own process (or a local server process when Krita's Python cannot load it).

Krita imports this package as ``latent_studio_krita`` and it registers the docker then; imported any other
way (the tests, as ``krita_plugin.latent_studio_krita``; the self-test) it registers nothing.
"""
import os

if __name__ == "latent_studio_krita" and not os.environ.get("LATENT_STUDIO_SELFTEST"):
    try:
        import krita  # noqa: F401
    except ImportError:  # not inside Krita
        pass
    else:
        from .docker import register

        register()
