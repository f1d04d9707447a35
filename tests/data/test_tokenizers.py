"""Byte-level tokenizer and the optional HF tokenizer.json path (a file built here, no hub)."""
import numpy as np

from outeffhop_jax import data


def test_byte_tokenizer_roundtrip_and_specials():
  tok = data.ByteTokenizer()
  ids = tok.encode("héllo\n")
  assert ids.dtype == np.int32 and ids.min() >= tok.num_special and ids.max() < tok.vocab_size
  assert tok.decode(np.concatenate([[tok.bos_id], ids, [tok.eos_id]])) == "héllo\n"
  assert len({tok.pad_id, tok.bos_id, tok.eos_id, tok.mask_id}) == 4


def test_hf_tokenizer_file(tmp_path):
  import tokenizers
  vocab = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[MASK]": 3, "[UNK]": 4, "hello": 5, "world": 6}
  tk = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
  tk.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  path = tmp_path / "tokenizer.json"
  tk.save(str(path))
  tok = data.get_tokenizer(str(path))
  assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.mask_id) == (0, 1, 2, 3)
  assert tok.vocab_size == 7
  assert tok.encode("hello world foo").tolist() == [5, 6, 4]
