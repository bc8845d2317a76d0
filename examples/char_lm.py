"""A character-level language model: two stacked LSTMs over the reference documentation every Python ships
(``xn.datasets.python_docs()``, offline), trained by truncated backpropagation through time (the book's
RnnlmTrainer, vol. 2 ch. 6) with ``xn.train`` over a ``TokenStream``; perplexity per epoch on the training
text and on the held-out last 10 %, then a sample of generated text. The same script runs on a GPU
(``--device cuda``) and on the CPU.

    python examples/char_lm.py [--epochs 3] [--hidden 256] [--device auto] [--temperature 0.7] [--limit N]
"""

import argparse
import sys
import time

import xpnet as xn


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--time-size", type=int, default=32, help="steps of backpropagation through time per batch")
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--temperature", type=float, default=0.7, help="of the generated sample (0: greedy)")
    ap.add_argument("--prompt", default="The ", help="the sample's start: characters of the training text")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N characters")
    args = ap.parse_args(argv)

    text = xn.datasets.python_docs()[:args.limit]
    ids, char_to_id, id_to_char = xn.datasets.char_ids(text)
    unknown = sorted({c for c in args.prompt if c not in char_to_id})
    if not args.prompt or unknown:
        ap.error(f"--prompt {args.prompt!r}: " + (f"characters not in the text, so unknown to the model (its "
                                                  f"{len(char_to_id)}-character vocabulary): {''.join(unknown)!r}"
                                                  if unknown else "give at least one character"))
    split = len(ids) * 9 // 10
    print(f"python_docs (Python {sys.version.split()[0]}): {len(text):,} characters, {len(char_to_id)} distinct; "
          f"{split:,} for training, the rest held out")
    train = xn.datasets.TokenStream(ids[:split], args.batch_size, args.time_size)
    held_out = xn.datasets.TokenStream(ids[split:], 8, args.time_size)
    xn.init.seed(0)
    model = xn.models.LanguageModel(len(char_to_id), args.embed, args.hidden, num_layers=2, dropout=args.dropout)
    start = time.perf_counter()
    history = xn.train(model, train, validation=held_out, loss="cross_entropy", optimizer=xn.optim.Adam(args.lr),
                       epochs=args.epochs, clip_grad_norm=1.0, device=args.device,
                       callbacks=[xn.callbacks.LearningRateSchedule(xn.callbacks.cosine(args.lr, args.epochs,
                                                                                        args.lr / 10))])
    print(f"trained on {history.device} in {time.perf_counter() - start:.0f}s; a sample at temperature "
          f"{args.temperature}:")
    prompt = [char_to_id[c] for c in args.prompt]
    sample = xn.to_numpy(model.generate(prompt, 400, temperature=args.temperature, seed=0))[0]
    print(args.prompt + "".join(id_to_char[int(i)] for i in sample))


if __name__ == "__main__":
    main()
