"""The local target: `runtime.LocalRuntime` behind `base.Runtime`, which drives mlops' own
engine (`mlops serve`) through its admin API (`client`), starts it (`process`) and reads
back what is served (`view`)."""
