//! Datasets: embedded MNIST, IDX, CIFAR-10, image folders, 2D toy sets.
