"""Inference: ``FusionPipeline`` (tiling included), the demo page and the web server."""
