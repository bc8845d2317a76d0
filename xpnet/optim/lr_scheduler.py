"""There is no ``xpnet.optim.lr_scheduler``: importing it says how xpnet schedules the learning rate."""

raise ImportError(
    "xpnet has no lr_scheduler module: xpnet schedules the learning rate with a callback, xn.train(..., "
    "callbacks=[xn.callbacks.LearningRateSchedule(xn.callbacks.step(0.1, step_size=10, gamma=0.5))]) for StepLR "
    "(xn.callbacks.cosine(0.1, epochs) for CosineAnnealingLR, any function of the epoch for LambdaLR); in a loop "
    "of your own, set optimizer.lr at the start of each epoch"
)
