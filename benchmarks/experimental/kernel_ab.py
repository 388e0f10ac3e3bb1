import sys, time, numpy as np
from semisep.backends import numpy as nb
import semisep as ss
def med(f,r):
    f(); ts=[]
    for _ in range(r):
        t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
    return np.median(ts)*1e3
n=1<<17; rng=np.random.default_rng(0)
d=-2+rng.uniform(-1,1,(8,n)); z=0.5+1e-3j
alpha=(d-z).astype(complex); beta=np.ones((8,n-1),complex); piv=np.full(8,3*2.2e-16)
bat=med(lambda: nb.resolvent_diagonal_kernel(alpha,beta,piv),11)
src=np.ones((8,n),complex); dst=np.empty_like(src)
cp=med(lambda: np.copyto(dst,src),31)
T=ss.Tridiagonal(d, np.ones(n-1))
pub=med(lambda: T.resolvent_diagonal(z),11)
print(f"{sys.argv[1]:8s} batch8 N=2^17 kernel {bat:.1f} ms  public {pub:.1f} ms  copyto {cp:.2f} ms  kernel/copy {bat/cp:.1f}x public/copy {pub/cp:.1f}x", flush=True)
