"""Numbers the papers report, for side-by-side tables in the reports (sources cited per entry)."""

# HRS paper, appendix Table A2: clean test accuracy (one image at a time) per defense.
HRS_TABLE_A2_TEST_ACCURACY = {
    "mnist": {"Base": 0.9904, "SAP": 0.9902, "Dropout 0.1": 0.9898, "Dropout 0.3": 0.9868, "Gaussian": 0.9902,
              "HRS 10x10": 0.9895, "HRS 20x20": 0.9891, "HRS 30x30": 0.9885},
    "cifar10": {"Base": 0.7917, "SAP": 0.7916, "Dropout 0.1": 0.7908, "Dropout 0.3": 0.7865, "Dropout 0.7": 0.7602,
                "Gaussian": 0.7804, "HRS 10x10": 0.7893, "HRS 20x20": 0.7876, "HRS 30x30": 0.7869},
}

# HRS paper, appendix F.1 / Table A3: CIFAR-10 test accuracy of 5-channel HRS with 1, 2, 3 blocks.
HRS_TABLE_A3_TEST_ACCURACY = {1: 0.7878, 2: 0.7874, 3: 0.7492}
