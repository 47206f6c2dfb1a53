"""Training module for cxrview models: ``python -m training train|finetune|evaluate|lr-find``.

Qt-free. Prints human-readable progress on stderr and one JSON object per line
on stdout (events: start, epoch, step, metric, checkpoint, done, error) so the
GUI can follow a run it launched with QProcess.
"""
