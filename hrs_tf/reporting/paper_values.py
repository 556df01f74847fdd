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

# HRS paper, Table A2 "Dev." column: input-gradient deviation, in units of 1e-4.
HRS_TABLE_A2_DEVIATION_E4 = {
    "mnist": {"SAP": 1.47, "Dropout 0.1": 3.45, "Dropout 0.3": 6.06, "Gaussian": 5.82, "HRS 10x10": 5.33,
              "HRS 20x20": 6.02, "HRS 30x30": 8.31},
    "cifar10": {"SAP": 2.81, "Dropout 0.1": 7.99, "Dropout 0.3": 16.67, "Dropout 0.7": 24.52, "Gaussian": 7.25,
                "HRS 10x10": 26.81, "HRS 20x20": 20.32, "HRS 30x30": 23.25},
}

# HRS paper, Table 2: mean DES per defense and attack (MNIST at 64/255, CIFAR-10 at 8/255).
HRS_TABLE_2_MEAN_DES = {
    "mnist": {"Dropout": {"FGSM": 11.99, "PGD": 17.94, "CW-PGD": 19.55},
              "Gaussian": {"FGSM": 14.90, "PGD": 71.78, "CW-PGD": 82.76},
              "HRS": {"FGSM": 36.41, "PGD": 76.64, "CW-PGD": 74.90}},
    "cifar10": {"Dropout": {"FGSM": 1.09, "PGD": 0.81, "CW-PGD": 0.76},
                "Gaussian": {"FGSM": 2.73, "PGD": 6.17, "CW-PGD": 5.47},
                "Adv. training": {"FGSM": 5.05, "PGD": 7.37, "CW-PGD": 6.57},
                "HRS": {"FGSM": 32.23, "PGD": 35.43, "CW-PGD": 35.55}},
}

# HRS paper, Table A3: CIFAR-10 CW-PGD ASR of 5-channel HRS with 1, 2, 3 blocks, at eps = k/255.
HRS_TABLE_A3_ASR = {1: {1: 0.056, 2: 0.164, 4: 0.467, 6: 0.767, 8: 0.855},
                    2: {1: 0.033, 2: 0.100, 4: 0.356, 6: 0.643, 8: 0.812},
                    3: {1: 0.029, 2: 0.131, 4: 0.337, 6: 0.552, 8: 0.659}}

# HRS paper section 6.2, finding 1: CIFAR-10 at 8/255, ASR on HRS (the other stochastic defenses: 100%).
HRS_SECTION_6_2_CIFAR_ASR_8 = {"PGD": 0.511, "CW-PGD": 0.545}
