"""The checker as an HTTP service (`maskgate serve`): FastAPI app, upload limits, metrics, web page."""
