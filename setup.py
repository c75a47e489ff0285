import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))

#: openmim 0.3.9 (only) requires opendatalab -> openxlab, which pins setuptools~=60.2.0 (torch needs >=77.0.3),
#: requests~=2.28.2 and others; 0.3.7 and 0.3.8 have the same `mim train/test` and none of those requirements
MIM = 'openmim>=0.3.7,<0.3.9'
DEMO = ['scikit-learn']  # the embedded demo's digits (tip_adapter_mm.demo.digits)
PLOTS = ['matplotlib']  # the sweep report's plots (tip_adapter_mm.sweep.plots)

setup(
    name='tip_adapter_mm',
    version='0.1.0',
    description='Tip-Adapter, Tip-Adapter-F and Meta-Adapter for CLIP as an mmpretrain plugin',
    long_description=open(osp.join(HERE, 'README.md')).read() if osp.exists(osp.join(HERE, 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['tip_adapter_mm', 'tip_adapter_mm.*']),
    # tip_adapter_mm/.mim/{configs,tools} are symbolic links to the repository's configs/ and tools/ (so an
    # editable install sees them); a wheel or an sdist holds copies. `mim train tip_adapter_mm CONFIG` finds
    # both there, as it does for mmpretrain, and the console commands accept tip_adapter_mm::CONFIG.
    package_data={'tip_adapter_mm': ['.mim/configs/**/*.py', '.mim/tools/*.py', '.mim/tools/*.sh'],
                  'tip_adapter_mm.demo': ['*.json'], 'tip_adapter_mm.datasets': ['data/*.json']},
    exclude_package_data={'tip_adapter_mm': ['.mim/tools/setup_env.sh', '.mim/tools/run_*.sh']},
    python_requires='>=3.9',
    install_requires=[
        # a matching pair, chosen by pip: torchvision pins its torch exactly. Never pin torch==2.13.0 alone:
        # some pip configurations then offer a CPU-only wheel that torchvision's compiled ops cannot load.
        'torch>=2.6,<2.16',  # 2.6: torch.load defaults to weights_only=True
        'torchvision>=0.21,<0.31',
        'open_clip_torch>=3.0,<4',
        'mmengine>=0.10.7,<1.0',
        # full mmcv has no wheels for current torch; mmpretrain only needs the lite build
        'mmcv-lite>=2.0,<2.4',
        'mmpretrain>=1.2.0,<1.3',
        'setuptools<81',  # mmengine's pkg_resources import (mmpretrain:: configs); fixed upstream, unreleased
        'numpy',
        'filelock',  # the work dir lock
        'pandas',  # the sweep's tables (runs.csv, report.csv/.md/.tex)
        'tabulate',  # pandas' to_markdown
        'Jinja2',  # pandas' to_latex
    ],
    extras_require={
        'demo': DEMO,
        'plots': PLOTS,
        'mim': [MIM],
        'tensorboard': ['tensorboard'],  # mmengine's TensorboardVisBackend
        'tests': ['pytest', 'tensorboard', *DEMO, *PLOTS, MIM],  # the suite runs the demo, the plots, mim, TensorBoard
        'all': [*DEMO, *PLOTS, MIM],
    },
    entry_points={'console_scripts': ['tip-adapter-sweep=tip_adapter_mm.sweep.cli:main',
                                      'tip-adapter-train=tip_adapter_mm.cli.train:main',
                                      'tip-adapter-test=tip_adapter_mm.cli.test:main',
                                      'tip-adapter-infer=tip_adapter_mm.cli.infer:main',
                                      'tip-adapter-export=tip_adapter_mm.cli.export_adapter:main',
                                      'tip-adapter-extract=tip_adapter_mm.cli.extract_features:main']},
)
