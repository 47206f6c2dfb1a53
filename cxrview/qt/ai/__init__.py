"""AI findings in the viewer, by job: :mod:`~cxrview.qt.ai.tasks` (worker bodies: build the
predictor, predict cache first, one heatmap on demand), :mod:`~cxrview.qt.ai.shown_anyway`
(the per-image "show AI output anyway" choice) and :mod:`~cxrview.qt.ai.controller` (runs
them for the image on the canvas and feeds the findings dock and the overlay layers)."""
