"""The papers' base CNNs (:mod:`.architectures`), model surgery (:mod:`.surgery`) and ``.h5`` files
(:mod:`.serialization`)."""

from hrs_tf.models.architectures import (ARCHITECTURES, BLOCK_STARTS, DEFAULT_ARCHITECTURE, Architecture,
                                         architecture_for, block_input_shape, block_ranges, build_base_model,
                                         build_block, count_params, extract_block, get_architecture,
                                         register_architecture)

__all__ = ["ARCHITECTURES", "Architecture", "BLOCK_STARTS", "DEFAULT_ARCHITECTURE", "architecture_for", "block_input_shape",
           "block_ranges", "build_base_model", "build_block", "count_params", "extract_block", "get_architecture",
           "register_architecture"]
