"""Fine-tuning in the GUI, by job: :mod:`~cxrview.qt.finetune.run` (one run's processes),
:mod:`~cxrview.qt.finetune.dialog` (options, estimate, live curve),
:mod:`~cxrview.qt.finetune.models_dialog` (versions, evidence, activation) and
:mod:`~cxrview.qt.finetune.controller` (the commands and the one run at a time)."""
