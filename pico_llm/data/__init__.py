"""The data pipeline: text sources, tokenizers, the token cache and batches.

    corpora     where text comes from (files, folders, globs, named corpora, hf: datasets), as blocks
    tokenizers  byte, char and BPE tokenizers
    shards      parallel tokenization into token files
    cache       the token cache, the train/val split and `load_corpus`
    batches     random training windows and consecutive eval windows

Nothing is imported here: tokenization workers import `shards` alone, without torch.
"""
