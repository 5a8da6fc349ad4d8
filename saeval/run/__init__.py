"""One evaluation run: configuration, runner, run folder, manifest, store and caches."""
