"""Serving a run: its version-addressed artifacts (`run`), request planning shared by the Serve
app and the in-process reference (`plan`), and that reference (`inprocess`). The Ray Serve
deployments themselves live in serve_app/."""
