"""gram-ray: train and serve generative reward models that reason (GRAM, GRAM-R2) on Ray.

Packages, lowest first; each imports only from those before it, and peers (joined by a comma) import
neither each other (``tests/unit/test_layers.py`` checks every import against this line):

    config < data < prompts < judging < stages, train < tinykit < apply < eval < run < cli

``config`` holds the typed settings; ``data`` reads, converts and writes preference data; ``prompts``
holds the judge and prover templates; ``judging`` is the engine and verdict core that ``stages`` (the
Ray Data inference stages) and ``apply`` (judges, ranking, the reward server) share; ``train`` trains on
Ray Train; ``tinykit`` builds the offline demo's model and task; ``eval`` scores benchmarks; ``run`` holds
the run folder, manifest and the pipeline driver that ``pipelines/`` and ``cli`` build on.
"""

__version__ = "0.2.0"
