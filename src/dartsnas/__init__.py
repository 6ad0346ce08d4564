"""dartsnas: differentiable architecture search (DARTS and descendants) with PyTorch."""
from .architect import Architect
from .genotype import Genotype, load_genotype, save_genotype
from .network import EvalNetwork
from .ops import OPS, register_op
from .process import setup_process
from .repeat import run_repeat
from .runner import run_search, run_training
from .space import SearchSpace
from .supernet import SearchNetwork

__version__ = "0.1.0"

__all__ = ["Architect", "EvalNetwork", "Genotype", "OPS", "SearchNetwork", "SearchSpace", "load_genotype",
           "register_op",
           "run_repeat", "run_search", "run_training", "save_genotype", "setup_process", "__version__"]
