"""Running the matrix: cells, options, plans, config hashes, artifacts, the store, the runner and executors.

A cell is ``(dataset, method, teacher, student, seed)``; its full
configuration is hashed (:mod:`.config`), and the hash keys its store row
(:mod:`.store`) and artifacts (:mod:`.artifacts`). :mod:`.computer` trains and
scores one cell without touching the store; :mod:`.runner` adds the store,
the explanations (:mod:`.explanations`) and the run loop; :mod:`.executors`
decide where cells run.
"""
