import json, sys, hashlib, glob, os, re
import torch
from safetensors.torch import load_file
from mrmkg.model import MRMKG
before_root, after_root = sys.argv[1], sys.argv[2]
for st in sorted(glob.glob(f"{after_root}/**/final/trainer_state.json", recursive=True)):
    rel=os.path.relpath(st, after_root)
    case=rel.split('/')[0]
    os.environ["MRMKG_CACHE"]=os.path.join(after_root, case, "cache")
    new=json.load(open(st))["weights_sha256"][0]
    d=os.path.join(os.path.dirname(st),"model")
    m=MRMKG.from_pretrained(d)
    names=[n for n,p in m.named_parameters() if p.requires_grad]
    state=load_file(os.path.join(d,"model.safetensors"))
    def dig(prefix): return hashlib.sha256(b"".join((prefix+n).encode()+state[n].float().contiguous().numpy().tobytes() for n in names)).hexdigest()
    bef=glob.glob(os.path.join(before_root, re.sub(r"-[0-9a-f]{12}/", "-*/", rel)))
    old=json.load(open(bef[0]))["weights_sha256"][0] if bef else None
    print(rel, "| new digest reproduced:", dig("")==new, "| with the old 'mrmkg.' names == before:", dig("mrmkg.")==old or dig("")==old)
