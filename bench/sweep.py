"""Train several recipes side by side on one GPU, then score each model on the degraded validation sets.

    python bench/sweep.py --data-dir /tmp/English --fonts gpu/fonts --work /tmp/sweep --out $OUT --minutes 8 \
        --peer /tmp/peer.npz

A small model leaves a GPU mostly idle, so the runs of RUNS go on side by side (--parallel at a
time), in RUNS' order, each train.py in its own folder (CHARS74K_HOME), a run that starts from
another's model, or distils others' (TEACHERS), once those are done. A run that cannot finish
before --minutes is not started; one still going then is stopped (SIGTERM: it keeps its best epoch
so far, marked "stopped"; SIGKILL after --grace seconds).
Each finished GoodImg run is scored by bench/degraded.py. Written to --out: results.jsonl (a line
a run: its train.py command, status, minutes, best epoch, speed, degraded scores), runs.tar.gz
(each run's log, history, model JSON and answers) and the best run's model with float16 weights,
cut in parts of under 16 MB (join them with cat).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
import checkpoint  # noqa: E402

# The fixed baseline: from scratch, 100 epochs, one warm-up epoch then cosine decay, batch 128, Adam 2e-3, gradients
# clipped to a global norm of 1 (RESULTS.md: "Why runs collapse"); the unclipped runs measure what clipping adds.
RECIPE = ["--weights", "none", "--epochs", "100", "--schedule", "cosine", "--batch-size", "128",
          "--learning-rate", "2e-3"]
CLIP = ["--clip-norm", "1.0"]
FONT_PRETRAINING = ["--data", "synthetic", "--synthetic-per-class", "300", "--epochs", "10"]
# The best recipe on CPU so far (RESULTS.md: "Residual blocks that start as identities: the full run").
LIGHT_ZERO = ["--light-augment", "--zero-init-residual"]
ADAMW = ["--weight-decay", "0.05"]
ALL_LEVERS = ["--label-smoothing", "0.1", "--strong-augment", "--ema", "0.999", *ADAMW]
# name: (flags after RECIPE, the run whose model it starts from), in the order they are started.
RUNS = {
    "clip-s1": (CLIP, None),
    "clip-s2": (CLIP + ["--train-seed", "2"], None),
    "clip-s3": (CLIP + ["--train-seed", "3"], None),
    "clip-light-zero-s1": (CLIP + LIGHT_ZERO, None),
    "clip-light-zero-s2": (CLIP + LIGHT_ZERO + ["--train-seed", "2"], None),
    "clip-zero-distill-s1": (CLIP + ["--zero-init-residual"], None),
    "clip-light-zero-distill-s1": (CLIP + LIGHT_ZERO, None),
    # The candidate to ship on CPU (RESULTS.md: "Relit images with the shipped model as the only teacher"), with one
    # teacher of the base recipe (there the shipped model, here clip-s2); the same with stronger augmentation, and
    # with the teacher answering each augmented view.
    "clip-light-zero-distill1-wd-s1": (CLIP + LIGHT_ZERO + ADAMW, None),
    "clip-light-zero-distill1-wd-s2": (CLIP + LIGHT_ZERO + ADAMW + ["--train-seed", "2"], None),
    "clip-light-zero-distill1-wd-strong-s1": (CLIP + LIGHT_ZERO + ADAMW + ["--strong-augment"], None),
    "clip-light-zero-distill1-wd-consistent-s1": (CLIP + LIGHT_ZERO + ADAMW + ["--consistent-teacher"], None),
    "base-s1": ([], None),
    "base-s2": (["--train-seed", "2"], None),
    "fonts": (FONT_PRETRAINING + CLIP, None),
    "clip-smooth-s1": (CLIP + ["--label-smoothing", "0.1"], None),
    "clip-adamw-s1": (CLIP + ADAMW, None),
    "clip-stretch-s1": (CLIP + ["--stretch-contrast"], None),
    "clip-stretch-s2": (CLIP + ["--stretch-contrast", "--train-seed", "2"], None),
    "clip-light-s1": (CLIP + ["--light-augment"], None),
    "clip-light-s2": (CLIP + ["--light-augment", "--train-seed", "2"], None),
    "clip-zero-s1": (CLIP + ["--zero-init-residual"], None),
    "clip-zero-s2": (CLIP + ["--zero-init-residual", "--train-seed", "2"], None),
    "clip-fonts-s1": (CLIP, "fonts"),
    "clip-fonts-s2": (CLIP + ["--train-seed", "2"], "fonts"),
    "clip-strong-s1": (CLIP + ["--strong-augment"], None),
    "clip-ema-s1": (CLIP + ["--ema", "0.999"], None),
    "clip-mixup-s1": (CLIP + ["--mixup", "0.2"], None),
    "clip-cutmix-s1": (CLIP + ["--cutmix", "1"], None),
    "clip-distill-s1": (CLIP, None),
    "clip-distill-s2": (CLIP + ["--train-seed", "2"], None),
    "clip-fonts-distill-s1": (CLIP, "fonts"),
    "clip-smooth-s2": (CLIP + ["--label-smoothing", "0.1", "--train-seed", "2"], None),
    "clip-all-s1": (CLIP + ALL_LEVERS, None),
    "clip-fonts-all-s1": (CLIP + ALL_LEVERS, "fonts"),
}
# The runs whose mean answer a run distils (--teacher), softened at T = 4: at T = 1 a teacher's answers on its own
# training images are almost the labels ("Choosing the distillation temperature" in RESULTS.md).
TEACHERS = {name: ["clip-s2", "clip-s3"] for name in ("clip-distill-s1", "clip-distill-s2", "clip-fonts-distill-s1",
                                                   "clip-zero-distill-s1", "clip-light-zero-distill-s1")}
TEACHERS.update({name: ["clip-s2"] for name in ("clip-light-zero-distill1-wd-s1", "clip-light-zero-distill1-wd-s2",
                                                 "clip-light-zero-distill1-wd-strong-s1",
                                                 "clip-light-zero-distill1-wd-consistent-s1")})
TEACHER_TEMPERATURE = 4
PEER = ["--batch", "128", "--epochs", "100", "--lr", "2e-3", "--aug", "--cosine", "--eval-every", "10",
        "--smooth", "0.1"]
PRETRAINING_SHARE = 0.4  # of a GoodImg run's time that the font pretraining takes
PART_BYTES = 16 * 2**20 - 2**16  # what comes back from a GPU machine: files under 16 MiB


def command_of(name, args):
    """The run's command line (with "python" for the interpreter)."""
    if name == "peer":
        return ["python", "gpu/peer_pytorch.py", args.peer, *PEER]
    flags, start_from = RUNS[name]
    temperature = ["--teacher-temperature", str(TEACHER_TEMPERATURE)] if name in TEACHERS else []
    command = ["python", "train.py", *RECIPE, *flags, *temperature, "--steps-per-execution", "8", "--backup-every",
               "25", *args.override]
    if pretrains(name):
        command += ["--fonts", args.fonts]
    else:
        command += ["--data-dir", args.data_dir]
    if start_from:
        command += ["--weights", model_path(args, start_from)]
    for teacher in TEACHERS.get(name, []):
        command += ["--teacher", model_path(args, teacher)]
    return command + ["--output", model_path(args, name)]


def needs(name):
    """The runs whose models a run starts from or learns from."""
    start_from = RUNS.get(name, ([], None))[1]
    return ([start_from] if start_from else []) + TEACHERS.get(name, [])


def pretrains(name):
    """Whether the run trains on rendered fonts (not scored on GoodImg)."""
    return "synthetic" in RUNS.get(name, ([], None))[0]


def length_share(name):
    return PRETRAINING_SHARE if pretrains(name) else 1.0


def model_path(args, name):
    return os.path.join(args.work, name, "model.h5")


class Sweep:
    def __init__(self, args):
        self.args, self.results, self.running, self.lock = args, {}, {}, threading.Lock()
        self.deadline = time.time() + 60 * args.minutes
        self.durations = []

    def expected_seconds(self, name):
        durations = sorted(self.durations) or [60 * self.args.expected_minutes]
        typical = durations[len(durations) // 2]
        return typical * length_share(name)

    def run(self, name):
        """Train and score one run in its slot; its line in results.jsonl, whatever happens."""
        start = time.time()
        try:
            result = self.train_and_score(name)
        except Exception as e:  # a run that cannot even start must not hold its slot until the deadline
            result = {"name": name, "status": f"failed ({type(e).__name__}: {e})"}
        finally:
            with self.lock:
                del self.running[name]  # held while it was scored, so that GPU memory stays shared out
        minutes = (time.time() - start) / 60
        if result["status"] == "done":
            self.durations.append(minutes * 60 / length_share(name))
        self.results[name] = result
        say(f"{name}: {result['status']} in {minutes:.1f} min, best {describe(result)}")
        with open(os.path.join(self.args.out, "results.jsonl"), "a") as f:
            f.write(json.dumps(result) + "\n")

    def train_and_score(self, name):
        args = self.args
        home = os.path.join(args.work, name)
        os.makedirs(home, exist_ok=True)
        env = {**os.environ, "CHARS74K_HOME": home, "XLA_PYTHON_CLIENT_MEM_FRACTION": str(args.memory_fraction)}
        command = command_of(name, args)
        start = time.time()
        with open(os.path.join(home, "train.log"), "w") as log:
            process = subprocess.Popen([sys.executable, *command[1:]], cwd=HERE, env=env, stdout=log,
                                       stderr=subprocess.STDOUT)
            with self.lock:
                self.running[name] = process
            code = process.wait()
        result = {"name": name, "command": " ".join(command), "minutes": round((time.time() - start) / 60, 2),
                  "status": {0: "done", 143: "stopped"}.get(code, f"failed ({code})")}
        if name == "peer":
            result["last_line"] = last_line(os.path.join(home, "train.log"))
        elif os.path.exists(model_path(args, name)):
            info = checkpoint.read_info(model_path(args, name))
            result.update(best=info.get("metrics"), timing=info.get("timing"))
            if code == 0 and not pretrains(name):
                result["degraded"] = self.score(name, {**env, "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.03"})
        return result

    def score(self, name, env):
        answers = os.path.join(self.args.work, name, "answers.npz")
        scored = subprocess.run([sys.executable, "bench/degraded.py", "--model", model_path(self.args, name),
                                 "--keras", "--json", "--probabilities", answers, "--data-dir", self.args.data_dir],
                                cwd=HERE, env=env, capture_output=True, text=True)
        if scored.returncode:
            return {"error": scored.stderr.strip().splitlines()[-1:]}
        return json.loads(scored.stdout.strip().splitlines()[-1])["sets"]

    def can_start(self, name):
        if any(self.results.get(needed, {}).get("status") != "done" for needed in needs(name)):
            return False
        return time.time() + self.expected_seconds(name) < self.deadline

    def go(self):
        waiting, threads = list(self.args.only), []
        while (waiting or self.running) and time.time() < self.deadline:
            for name in list(waiting):
                if len(self.running) >= self.args.parallel:
                    break
                if set(needs(name)) & set(waiting + list(self.running)):
                    continue  # its starting model or a teacher is still to be trained
                waiting.remove(name)
                if not self.can_start(name):
                    self.results[name] = {"name": name, "status": "not started (no time, or its start failed)"}
                    say(f"{name}: not started")
                    continue
                say(f"{name}: started")
                with self.lock:
                    self.running[name] = None  # its process comes in a moment
                threads.append(threading.Thread(target=self.run, args=(name,)))
                threads[-1].start()
                time.sleep(2)  # so that the runs do not all compile at once
            time.sleep(1)
        self.stop(threads, signal.SIGTERM)  # each keeps its best epoch so far
        self.stop(threads, signal.SIGKILL)  # those still going after --grace seconds

    def stop(self, threads, signum):
        with self.lock:
            for process in filter(None, self.running.values()):
                if process.poll() is None:
                    process.send_signal(signum)
        give_up = time.time() + self.args.grace
        for thread in threads:
            thread.join(max(0.0, give_up - time.time()))


def last_line(path):
    with open(path) as f:
        lines = f.read().strip().splitlines()
    return lines[-1] if lines else ""


def describe(result):
    nan = float("nan")
    best = result.get("best") or {}
    degraded = (result.get("degraded") or {}).get("mean of degraded", {})
    return (f"epoch {best.get('epoch')}: {best.get('val_accuracy', nan):.2%} (ci {best.get('val_accuracy_ci', nan):.2%}), "
            f"degraded {degraded.get('accuracy', nan):.2%}")


def say(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def pack(sweep):
    """runs.tar.gz (logs, histories, model JSONs, splits), answers.tar.gz and the best finished GoodImg run's
    model in float16, in parts, with its JSON in runs.tar.gz."""
    args = sweep.args
    finished = [r for r in sweep.results.values()
                if r.get("status") == "done" and r.get("degraded") and "error" not in r["degraded"]]
    best = max(finished, key=lambda r: r["best"]["val_accuracy"]) if finished else None
    if best:
        import export

        say(f"best: {best['name']}")
        copy = export.float16_copy(model_path(args, best["name"]), os.path.join(args.work, "best", "best_fp16.h5"))
        with open(copy, "rb") as f:
            for part, chunk in enumerate(iter(lambda: f.read(PART_BYTES), b"")):
                with open(os.path.join(args.out, f"best_fp16.h5.part{part}"), "wb") as out:
                    out.write(chunk)
    members = ("train.log", "saved/history.csv", "model.json", "saved/split.json", "best_fp16.json")
    for archive, kept in (("runs.tar.gz", members), ("answers.tar.gz", ("answers.npz",))):
        with tarfile.open(os.path.join(args.out, archive), "w:gz") as tar:
            for name in [*args.only, "best"]:
                for member in kept:
                    path = os.path.join(args.work, name, member)
                    if os.path.exists(path):
                        tar.add(path, arcname=f"{name}/{member}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="GoodImg (bench/gpu_data.py unpack writes one)")
    parser.add_argument("--fonts", required=True, help="extra fonts for the pretraining run (gpu_data.py fonts)")
    parser.add_argument("--work", required=True, help="a folder for the runs")
    parser.add_argument("--out", required=True, help="where the results go")
    parser.add_argument("--minutes", type=float, default=8.0, help="stop everything after this long")
    parser.add_argument("--expected-minutes", type=float, default=4.0, help="a run's length until one has finished")
    parser.add_argument("--peer", help="the npz of gpu_data.py unpack, for the run named peer: gpu/peer_pytorch.py")
    parser.add_argument("--grace", type=float, default=60.0, help="seconds a stopped run has to save and be scored")
    parser.add_argument("--parallel", type=int, default=9)
    parser.add_argument("--memory-fraction", type=float, default=0.08, help="of the GPU's memory for each run")
    parser.add_argument("--only", default=",".join([*list(RUNS)[:2], "peer", *list(RUNS)[2:]]),
                        help="comma-separated names of RUNS (and peer) to run, in this order")
    parser.add_argument("--override", nargs=argparse.REMAINDER, default=[],
                        help="flags put after every run's own (a quick check on a CPU), e.g. --epochs 1 ...")
    args = parser.parse_args(argv)
    args.only = [name for name in args.only.split(",") if name != "peer" or args.peer]
    os.makedirs(args.out, exist_ok=True)
    sweep = Sweep(args)
    sweep.go()
    pack(sweep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
